"""Schema plumbing: the ``schema_migrations`` table and applying migrations under a session-level advisory lock."""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

from tcloud.store._connections import connection

log = logging.getLogger(__name__)

# Any fixed 64-bit number; every process that migrates takes the same session-level lock.
MIGRATION_LOCK_KEY = 0x7C10_0D_0001


def migration_files() -> list[tuple[str, str]]:
    """All migrations as ``(name, sql)``, in the order they apply (by file name)."""
    folder = resources.files("tcloud") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]



async def apply_migrations(conn: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """Apply every migration (:func:`migration_files`) not yet recorded, each in one transaction with its row.

    Holds the migration advisory lock (session level, on one connection) throughout, so several processes can call
    it at once and each migration applies once.

    Args:
        conn: The platform database (a pool lends one connection for the whole run).

    Returns:
        The names of the migrations this call applied.
    """
    applied: list[str] = []
    async with connection(conn) as c:
        await c.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await c.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name text PRIMARY KEY,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["name"] for r in await c.fetch("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                async with c.transaction():
                    await c.execute(sql)
                    await c.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await c.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied
