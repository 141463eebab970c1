"""Backups: object stores (filesystem, OCI Object Storage), streaming pg_dump/pg_restore, retention."""
