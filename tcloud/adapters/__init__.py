"""The outside world the activities talk to beyond Postgres: object storage and pg_dump for backups, webhooks and
SMTP for spend alerts (Stripe and Prometheus are used through their own clients, made in tcloud.platform.clients)."""
