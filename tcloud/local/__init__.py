"""The local platform: real Temporal, PostgreSQL, Prometheus and the Stripe fake as plain processes.

Both ``deploy.sh local`` and the test fixtures start components through this package, so the tests run
exactly what a newcomer runs.
"""
