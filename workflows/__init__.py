"""Workflows: deterministic orchestration of the platform's cycles; no I/O here."""
