"""Postgres pool and schema migrations (ordered plain SQL files, applied under an advisory lock).

The SQL lives in ``tcloud.store.schema``; these names stay here because the processes and tests import them.
"""

from __future__ import annotations

import asyncpg

from tcloud.store import schema


def migration_files() -> list[tuple[str, str]]:
    """All migrations as ``(name, sql)``, in the order they apply (by file name)."""
    return schema.migration_files()


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded; safe to call from several processes at once.

    Returns:
        The names of the migrations this call applied.
    """
    return await schema.apply_migrations(conn)


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool and bring the schema up to date before anyone uses it."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool
