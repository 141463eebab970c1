"""The usage ledger in Postgres: who owned what in an hour, writing an hour once, the per-collector watermark."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from tcloud.domain.metering import HOUR, floor_hour, hours_between
from tcloud.store import usage as usage_store
from tcloud.store.usage import LedgerRow

__all__ = ["LedgerRow", "is_collected", "owners_for_hour", "pending_hours", "write_hour"]


async def owners_for_hour(pool: asyncpg.Pool, hour: datetime, control_namespace: str) -> dict[str, str | None]:
    """Every namespace metered in ``hour`` and the account that owned it then (None for the control namespace).

    A namespace owned by several accounts within the hour goes to the one whose ownership began last.
    """
    rows = await usage_store.owners_between(pool, hour, hour + HOUR)
    owners: dict[str, str | None] = {r["namespace"]: r["account_id"] for r in rows}
    owners[control_namespace] = None
    return owners


async def is_collected(pool: asyncpg.Pool, collector: str, hour: datetime) -> bool:
    return await usage_store.is_hour_collected(pool, collector, hour)


async def write_hour(pool: asyncpg.Pool, collector: str, hour: datetime, metrics: list[str], rows: list[LedgerRow],
                     *, final: bool) -> bool:
    """Replace the hour's rows of ``metrics`` with ``rows``, unless the hour is already collected.

    A final write also records the hour in ``usage_collected_hours`` and advances the watermark, in the same
    transaction: afterwards the hour's rows never change again. A provisional write (an hour still open) leaves
    the hour uncollected, so the final collection replaces its rows.

    Returns:
        Whether rows were written (False: the hour was already collected, nothing changed).
    """
    return await usage_store.write_ledger_hour(pool, collector, hour, metrics, rows, final=final)


async def pending_hours(pool: asyncpg.Pool, collector: str, through: datetime, max_hours: int,
                        from_hour: datetime | None = None) -> tuple[list[datetime], bool]:
    """The hours before ``through`` the collector still owes, oldest first, at most ``max_hours``.

    They start at the watermark, or earlier at ``from_hour`` (default: the hour before ``through``), so a run for
    an old hour (a schedule backfill) or an operator's range also fills hours below the watermark that are missing.

    Returns:
        ``(hours, more)``: ``more`` says hours beyond ``max_hours`` remain.
    """
    through = floor_hour(through)
    mark = await usage_store.collected_through(pool, collector)
    start = floor_hour(from_hour) if from_hour is not None else through - HOUR
    if mark is not None:
        start = min(start, mark)
    done = await usage_store.collector_hours_between(pool, collector, start, through)
    owed = [h for h in hours_between(start, through) if h not in done]
    return owed[:max_hours], len(owed) > max_hours
