"""Plumbing every process shares: the Postgres pool, the Temporal client and namespaces, clients of outside
services, Schedules."""
