"""Usage tables: ``usage_ledger``, ``usage_collected_hours``, ``usage_watermarks``, and the ownership reads metering
needs from ``namespace_ownership``.

The invariant of the ledger lives in :func:`write_ledger_hour`: an hour of a collector's usage is written once, in
one transaction with its ``usage_collected_hours`` row (and the watermark it advances).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from tcloud.domain.metering import HOUR
from tcloud.store._connections import connection


@dataclass(frozen=True)
class LedgerRow:
    """One (namespace, metric) quantity of the hour being written; ``account_id`` None means not billable."""

    namespace: str
    metric: str
    quantity: Decimal
    account_id: str | None



async def owners_between(conn: asyncpg.Pool | asyncpg.Connection, start: datetime,
                         end: datetime) -> list[asyncpg.Record]:
    """``(namespace, account_id)`` of every namespace owned within ``[start, end)``, the latest ownership each."""
    return list(await conn.fetch(
        """SELECT DISTINCT ON (namespace) namespace, account_id
             FROM namespace_ownership
            WHERE valid_from < $2 AND (valid_to IS NULL OR valid_to > $1)
            ORDER BY namespace, valid_from DESC""",
        start, end,
    ))


async def account_namespaces_between(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, start: datetime,
                                     end: datetime) -> list[str]:
    """The namespaces ``account_id`` owned at some time from ``start`` to ``end`` (the ownership began by ``end``)."""
    return [r["namespace"] for r in await conn.fetch(
        """SELECT DISTINCT namespace FROM namespace_ownership
            WHERE account_id = $1 AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $3)""",
        account_id, end, start)]


async def is_hour_collected(conn: asyncpg.Pool | asyncpg.Connection, collector: str, hour: datetime) -> bool:
    """Whether ``collector`` has already collected ``hour`` for good."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM usage_collected_hours WHERE collector = $1 AND hour = $2", collector, hour))


async def write_ledger_hour(conn: asyncpg.Pool | asyncpg.Connection, collector: str, hour: datetime,
                            metrics: list[str], rows: list[LedgerRow], *, final: bool) -> bool:
    """Replace the hour's ledger rows of ``metrics`` with ``rows`` in one transaction, unless already collected.

    The transaction holds an advisory lock on ``(collector, hour)``. A final write also inserts the hour's
    ``usage_collected_hours`` row and advances the collector's watermark, in the same transaction: afterwards the
    hour's rows never change again. A provisional write leaves the hour uncollected.

    Returns:
        Whether rows were written (False: the hour was already collected, nothing changed).
    """
    async with connection(conn) as c, c.transaction():
        await c.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", collector, hour.isoformat())
        if await c.fetchval("SELECT 1 FROM usage_collected_hours WHERE collector = $1 AND hour = $2",
                            collector, hour):
            return False
        await c.execute("DELETE FROM usage_ledger WHERE hour = $1 AND metric = ANY($2::text[])", hour, metrics)
        await c.copy_records_to_table(
            "usage_ledger",
            columns=["namespace", "hour", "metric", "quantity", "account_id", "billable"],
            records=[(r.namespace, hour, r.metric, r.quantity, r.account_id, r.account_id is not None)
                     for r in rows],
        )
        if final:
            await c.execute("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2)", collector, hour)
            await _advance_watermark(c, collector, hour)
    return True


async def _advance_watermark(conn: asyncpg.Connection, collector: str, hour: datetime) -> None:
    """Move the collector's watermark past every consecutive collected hour (inside the caller's transaction)."""
    mark = await conn.fetchval(
        "SELECT collected_through FROM usage_watermarks WHERE collector = $1 FOR UPDATE", collector)
    if mark is None:
        mark = hour  # the first hour ever collected starts the watermark
    collected = {r["hour"] for r in await conn.fetch(
        "SELECT hour FROM usage_collected_hours WHERE collector = $1 AND hour >= $2", collector, mark)}
    while mark in collected:
        mark += HOUR
    await conn.execute(
        """INSERT INTO usage_watermarks (collector, collected_through) VALUES ($1, $2)
           ON CONFLICT (collector) DO UPDATE SET collected_through = EXCLUDED.collected_through, updated_at = now()
            WHERE usage_watermarks.collected_through < EXCLUDED.collected_through""",
        collector, mark,
    )


async def collected_through(conn: asyncpg.Pool | asyncpg.Connection, collector: str) -> datetime | None:
    """The collector's watermark: every hour before it is collected (None before its first hour)."""
    mark: datetime | None = await conn.fetchval(
        "SELECT collected_through FROM usage_watermarks WHERE collector = $1", collector)
    return mark


async def collector_hours_between(conn: asyncpg.Pool | asyncpg.Connection, collector: str, start: datetime,
                                  end: datetime) -> set[datetime]:
    """The hours in ``[start, end)`` that ``collector`` has collected."""
    return {r["hour"] for r in await conn.fetch(
        "SELECT hour FROM usage_collected_hours WHERE collector = $1 AND hour >= $2 AND hour < $3",
        collector, start, end)}


async def collected_hours_between(conn: asyncpg.Pool | asyncpg.Connection, start: datetime,
                                  end: datetime) -> list[asyncpg.Record]:
    """``(collector, hour)`` of every hour in ``[start, end)`` collected by any collector."""
    return list(await conn.fetch(
        "SELECT collector, hour FROM usage_collected_hours WHERE hour >= $1 AND hour < $2", start, end))


async def account_ledger_between(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, start: datetime,
                                 end: datetime) -> list[asyncpg.Record]:
    """``(namespace, hour, metric, quantity)`` of the account's ledger rows of the hours in ``[start, end)``."""
    return list(await conn.fetch(
        """SELECT namespace, hour, metric, quantity FROM usage_ledger
            WHERE account_id = $1 AND hour >= $2 AND hour < $3""", account_id, start, end))

