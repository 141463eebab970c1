"""Usage tables: ``usage_ledger``, ``usage_collected_hours``, ``usage_watermarks``, and the ownership reads metering
needs from ``namespace_ownership``.

The invariant of the ledger lives in :func:`write_ledger_hour`: an hour of a collector's usage is written once, in
one transaction with its ``usage_collected_hours`` row (and the watermark it advances).

Reads of usage sum in Postgres, from the rollups ``usage_daily`` and ``usage_monthly`` that triggers keep with every
ledger write (migration 0501): :func:`account_ledger_sums` prices a month from one row per namespace and metric,
:func:`account_daily_quantities` serves the daily usage, and :func:`day_versions` tells the API when a day it
rendered has changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeAlias

import asyncpg

from tcloud.domain.metering import HOUR
from tcloud.store._connections import connection
from tcloud.store.invoices import LedgerSum

LEDGER_COLUMNS = ("namespace", "hour", "metric", "quantity", "account_id", "billable")
# One ``usage_ledger`` row in the order of LEDGER_COLUMNS.
LedgerRecord: TypeAlias = tuple[str, datetime, str, Decimal, str | None, bool]


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
        await copy_ledger_rows(c, [(r.namespace, hour, r.metric, r.quantity, r.account_id, r.account_id is not None)
                                   for r in rows])
        if final:
            await c.execute("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2)", collector, hour)
            await _advance_watermark(c, collector, hour)
    return True


async def copy_ledger_rows(conn: asyncpg.Pool | asyncpg.Connection, records: Iterable[LedgerRecord]) -> None:
    """Append ``(namespace, hour, metric, quantity, account_id, billable)`` rows to ``usage_ledger`` with COPY.

    No check of its own: :func:`write_ledger_hour` calls it inside its transaction, and bulk loads (the API bench,
    imports) that keep the ledger's rules themselves call it directly.
    """
    async with connection(conn) as c:
        await c.copy_records_to_table("usage_ledger", columns=list(LEDGER_COLUMNS), records=records)


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


async def collected_counts(conn: asyncpg.Pool | asyncpg.Connection, collectors: Sequence[str], start: datetime,
                           end: datetime, granularity: Literal["hour", "day"]) -> dict[datetime, int]:
    """Per UTC hour (or day) of ``[start, end)``: how many ``(collector, hour)`` of ``collectors`` are collected.

    A bucket is complete when its count is ``len(collectors)`` times its hours.
    """
    return {r["bucket"]: r["n"] for r in await conn.fetch(
        """SELECT date_trunc($4, hour, 'UTC') AS bucket, count(*) AS n FROM usage_collected_hours
            WHERE collector = ANY($1::text[]) AND hour >= $2 AND hour < $3 GROUP BY 1""",
        list(collectors), start, end, granularity)}


# Rollups (migration 0501): usage_daily and usage_monthly, kept by triggers on usage_ledger, and usage_day_versions.


async def day_versions(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, first: date,
                       last: date) -> dict[date, int]:
    """The version of each of the account's UTC days from ``first`` to ``last`` included that has ledger rows (or
    had): it changes whenever one of the day's rows does. Read it before the rows it stands for."""
    return {r["day"]: r["version"] for r in await conn.fetch(
        "SELECT day, version FROM usage_day_versions WHERE account_id = $1 AND day >= $2 AND day <= $3",
        account_id, first, last)}


async def account_daily_quantities(conn: asyncpg.Pool | asyncpg.Connection, account_id: str,
                                   days: Sequence[date]) -> list[asyncpg.Record]:
    """``(day, namespace, metric, quantity)``: the sum of the account's ledger rows (billable or not) of each of
    ``days`` (UTC), per namespace and metric, for those that have rows."""
    return list(await conn.fetch(
        """SELECT day, namespace, metric, sum(quantity) AS quantity FROM usage_daily
            WHERE account_id = $1 AND day = ANY($2::date[])
            GROUP BY day, namespace, metric HAVING sum(ledger_rows) > 0""", account_id, list(days)))


async def account_hourly_quantities(conn: asyncpg.Pool | asyncpg.Connection, account_id: str,
                                    hours: Sequence[datetime]) -> list[asyncpg.Record]:
    """``(hour, namespace, metric, quantity)`` of the account's ledger rows (billable or not) of ``hours``."""
    return list(await conn.fetch(
        """SELECT hour, namespace, metric, quantity FROM usage_ledger
            WHERE account_id = $1 AND hour = ANY($2::timestamptz[])""", account_id, list(hours)))


@dataclass(frozen=True)
class _SumPlan:
    """``[from, to)`` as signed pieces: whole months, ranges of whole days and ranges of hours (day/hour ranges are
    half-open); their signed sum is the range's."""

    months: list[tuple[date, int]]
    days: list[tuple[date, date, int]]
    hours: list[tuple[datetime, datetime, int]]


def _ceil_hour(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + HOUR


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _sum_plan(hour_from: datetime, hour_to: datetime, now: datetime) -> _SumPlan:
    """Cover the ledger hours in ``[hour_from, hour_to)`` with few rollup rows and ledger hours.

    A month the range covers whole is its monthly row, a day its daily row. A partial month (day) is either its own
    days and hours, or the whole month (day) minus those outside the range, whichever reads fewer hours that have
    passed by ``now`` (hours to come have no rows yet): month to date is the month minus the hours still to come.
    """
    plan = _SumPlan([], [], [])
    start, end = _ceil_hour(hour_from.astimezone(UTC)), _ceil_hour(hour_to.astimezone(UTC))
    day = timedelta(days=1)

    def cost(lo: datetime, hi: datetime) -> float:
        return max(timedelta(0), min(hi, now) - lo) / HOUR

    def part_of_day(first: datetime, lo: datetime, hi: datetime, sign: int) -> None:
        if cost(first, lo) + cost(hi, first + day) < cost(lo, hi):
            plan.days.append((first.date(), (first + day).date(), sign))
            for out_lo, out_hi in ((first, lo), (hi, first + day)):
                if out_lo < out_hi:
                    plan.hours.append((out_lo, out_hi, -sign))
        else:
            plan.hours.append((lo, hi, sign))

    def add(lo: datetime, hi: datetime, sign: int) -> None:
        if lo >= hi:
            return
        day_lo = lo if lo.hour == 0 else lo.replace(hour=0) + day
        day_hi = hi.replace(hour=0)
        if day_lo > day_hi:  # within one day
            part_of_day(day_hi, lo, hi, sign)
            return
        if day_lo < day_hi:
            plan.days.append((day_lo.date(), day_hi.date(), sign))
        if lo < day_lo:
            part_of_day(day_lo - day, lo, day_lo, sign)
        if day_hi < hi:
            part_of_day(day_hi, day_hi, hi, sign)

    month = _month_start(start)
    while month < end:
        following = _next_month(month)
        lo, hi = max(start, month), min(end, following)
        if (lo, hi) == (month, following):
            plan.months.append((month.date(), 1))
        elif cost(month, lo) + cost(hi, following) < cost(lo, hi):
            plan.months.append((month.date(), 1))
            add(month, lo, -1)
            add(hi, following, -1)
        else:
            add(lo, hi, 1)
        month = following
    return plan


async def account_ledger_sums(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, hour_from: datetime,
                              hour_to: datetime) -> list[LedgerSum]:
    """The account's billable ledger rows of the hours in ``[hour_from, hour_to)``, counted and summed by metric and
    namespace, in that order; from the rollups (:func:`_sum_plan`), equal to summing the rows themselves.

    Each piece is its own index range scan (``OFFSET 0`` keeps the planner from merging the pieces into one join
    that scans every row of the account).
    """
    plan = _sum_plan(hour_from, hour_to, datetime.now(UTC))
    rows = await conn.fetch(
        """SELECT metric, namespace, sum(n)::bigint AS n, sum(q) AS q FROM (
               SELECT r.metric, r.namespace, r.ledger_rows * p.sign AS n, r.quantity * p.sign AS q
                 FROM unnest($2::date[], $3::int[]) AS p(month, sign), LATERAL (
                      SELECT * FROM usage_monthly
                       WHERE account_id = $1 AND month = p.month AND billable OFFSET 0) r
               UNION ALL
               SELECT r.metric, r.namespace, r.ledger_rows * p.sign, r.quantity * p.sign
                 FROM unnest($4::date[], $5::date[], $6::int[]) AS p(lo, hi, sign), LATERAL (
                      SELECT * FROM usage_daily
                       WHERE account_id = $1 AND day >= p.lo AND day < p.hi AND billable OFFSET 0) r
               UNION ALL
               SELECT u.metric, u.namespace, p.sign, u.quantity * p.sign
                 FROM unnest($7::timestamptz[], $8::timestamptz[], $9::int[]) AS p(lo, hi, sign), LATERAL (
                      SELECT * FROM usage_ledger
                       WHERE account_id = $1 AND hour >= p.lo AND hour < p.hi AND billable OFFSET 0) u
           ) pieces
           GROUP BY metric, namespace HAVING sum(n) > 0 ORDER BY metric, namespace""",
        account_id, [m for m, _ in plan.months], [s for _, s in plan.months],
        [lo for lo, _, _ in plan.days], [hi for _, hi, _ in plan.days], [s for _, _, s in plan.days],
        [lo for lo, _, _ in plan.hours], [hi for _, hi, _ in plan.hours], [s for _, _, s in plan.hours])
    return [LedgerSum(r["metric"], r["namespace"], r["n"], Decimal(r["q"])) for r in rows]
