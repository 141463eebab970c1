"""Reads about the platform itself: liveness, the schema's state, what the operator console and the pipeline
metrics show."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg


async def ping(conn: asyncpg.Pool | asyncpg.Connection, *, within_seconds: float | None = None) -> None:
    """One round trip to the database; raises ``TimeoutError`` when it takes longer than ``within_seconds``."""
    await conn.fetchval("SELECT 1", timeout=within_seconds)


async def applied_migration_count(conn: asyncpg.Pool | asyncpg.Connection) -> int:
    """How many migrations ``schema_migrations`` records as applied."""
    return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))


async def first_accounts(conn: asyncpg.Pool | asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """``(id, name, plan, status)`` of the first ``limit`` accounts by id, for the operator console."""
    return list(await conn.fetch("SELECT id, name, plan, status FROM accounts ORDER BY id LIMIT $1", limit))


async def namespace_usage_since(conn: asyncpg.Pool | asyncpg.Connection, namespace: str,
                                start: datetime) -> dict[str, Decimal]:
    """The namespace's ledger total per metric over the hours from ``start`` on (the console's platform cost)."""
    return {r["metric"]: Decimal(r["q"]) for r in await conn.fetch(
        """SELECT metric, sum(quantity) AS q FROM usage_ledger
            WHERE namespace = $1 AND hour >= $2 GROUP BY metric""", namespace, start)}


async def collection_watermarks(conn: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """``(collector, collected_through)`` of every usage collector.

    Raises:
        asyncpg.UndefinedTableError: the usage migration has not been applied yet.
    """
    return list(await conn.fetch("SELECT collector, collected_through FROM usage_watermarks"))
