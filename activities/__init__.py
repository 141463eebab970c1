"""Activities: the only code that talks to Postgres, Prometheus, Stripe, Temporal's APIs and object storage."""
