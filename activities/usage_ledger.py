"""The usage ledger in Postgres: who owned what in an hour, writing an hour once, the per-collector watermark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from tcloud.metering import HOUR, floor_hour, hours_between


@dataclass(frozen=True)
class LedgerRow:
    """One (namespace, metric) quantity of the hour being written; ``account_id`` None means not billable."""

    namespace: str
    metric: str
    quantity: Decimal
    account_id: str | None


async def owners_for_hour(pool: asyncpg.Pool, hour: datetime, control_namespace: str) -> dict[str, str | None]:
    """Every namespace metered in ``hour`` and the account that owned it then (None for the control namespace).

    A namespace owned by several accounts within the hour goes to the one whose ownership began last.
    """
    rows = await pool.fetch(
        """SELECT DISTINCT ON (namespace) namespace, account_id
             FROM namespace_ownership
            WHERE valid_from < $2 AND (valid_to IS NULL OR valid_to > $1)
            ORDER BY namespace, valid_from DESC""",
        hour, hour + HOUR,
    )
    owners: dict[str, str | None] = {r["namespace"]: r["account_id"] for r in rows}
    owners[control_namespace] = None
    return owners


async def is_collected(pool: asyncpg.Pool, collector: str, hour: datetime) -> bool:
    return bool(await pool.fetchval(
        "SELECT 1 FROM usage_collected_hours WHERE collector = $1 AND hour = $2", collector, hour))


async def write_hour(pool: asyncpg.Pool, collector: str, hour: datetime, metrics: list[str], rows: list[LedgerRow],
                     *, final: bool) -> bool:
    """Replace the hour's rows of ``metrics`` with ``rows``, unless the hour is already collected.

    A final write also records the hour in ``usage_collected_hours`` and advances the watermark, in the same
    transaction: afterwards the hour's rows never change again. A provisional write (an hour still open) leaves
    the hour uncollected, so the final collection replaces its rows.

    Returns:
        Whether rows were written (False: the hour was already collected, nothing changed).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", collector, hour.isoformat())
        if await conn.fetchval("SELECT 1 FROM usage_collected_hours WHERE collector = $1 AND hour = $2",
                               collector, hour):
            return False
        await conn.execute("DELETE FROM usage_ledger WHERE hour = $1 AND metric = ANY($2::text[])", hour, metrics)
        await conn.copy_records_to_table(
            "usage_ledger",
            columns=["namespace", "hour", "metric", "quantity", "account_id", "billable"],
            records=[(r.namespace, hour, r.metric, r.quantity, r.account_id, r.account_id is not None)
                     for r in rows],
        )
        if final:
            await conn.execute("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2)", collector, hour)
            await _advance_watermark(conn, collector, hour)
    return True


async def _advance_watermark(conn: asyncpg.Connection, collector: str, hour: datetime) -> None:
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


async def pending_hours(pool: asyncpg.Pool, collector: str, through: datetime, max_hours: int,
                        from_hour: datetime | None = None) -> tuple[list[datetime], bool]:
    """The hours before ``through`` the collector still owes, oldest first, at most ``max_hours``.

    They start at the watermark, or earlier at ``from_hour`` (default: the hour before ``through``), so a run for
    an old hour (a schedule backfill) or an operator's range also fills hours below the watermark that are missing.

    Returns:
        ``(hours, more)``: ``more`` says hours beyond ``max_hours`` remain.
    """
    through = floor_hour(through)
    mark = await pool.fetchval("SELECT collected_through FROM usage_watermarks WHERE collector = $1", collector)
    start = floor_hour(from_hour) if from_hour is not None else through - HOUR
    if mark is not None:
        start = min(start, mark)
    done = {r["hour"] for r in await pool.fetch(
        "SELECT hour FROM usage_collected_hours WHERE collector = $1 AND hour >= $2 AND hour < $3",
        collector, start, through)}
    owed = [h for h in hours_between(start, through) if h not in done]
    return owed[:max_hours], len(owed) > max_hours
