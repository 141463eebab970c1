"""The usage rollups (migration 0501) and what reads them: the triggers keep usage_daily, usage_monthly and the day
versions equal to the ledger through every kind of write; sums from the rollups equal sums of the rows; the usage
JSON written directly equals protobuf's mapping; GET /cloud/usage answers what the rows say, and follows a change
to a day it has already rendered."""

from __future__ import annotations

import json
import random
import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
from aiohttp.test_utils import TestClient

from api import usage_summaries
from api.usage_summaries import LedgerEntry
from tcloud.domain.metering import floor_hour
from tcloud.store import invoices as invoices_store
from tcloud.store import usage as usage_store
from tcloud.store.usage import LedgerRow
from tests.billing_helpers import customer_headers

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
METRICS = ("actions", "active_storage", "retained_storage")


async def _account(pool: asyncpg.Pool) -> str:
    account_id = "r" + secrets.token_hex(5)
    await pool.execute("INSERT INTO accounts (id, name, email, plan) VALUES ($1, $1, 'r@example.com', 'payg')",
                       account_id)
    return account_id


async def _rollups_match_ledger(pool: asyncpg.Pool, accounts: list[str]) -> None:
    for table, bucket in (("usage_daily", "day"), ("usage_monthly", "month")):
        expected = await pool.fetch(
            f"""SELECT account_id, {"(hour AT TIME ZONE 'UTC')::date" if bucket == "day"
                                    else "date_trunc('month', hour AT TIME ZONE 'UTC')::date"} AS bucket,
                       namespace, metric, billable, count(*) AS n, sum(quantity) AS q
                  FROM usage_ledger WHERE account_id = ANY($1::text[]) GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5""",
            accounts)
        got = await pool.fetch(
            f"""SELECT account_id, {bucket} AS bucket, namespace, metric, billable, ledger_rows AS n, quantity AS q
                  FROM {table} WHERE account_id = ANY($1::text[]) AND ledger_rows > 0 ORDER BY 1, 2, 3, 4, 5""",
            accounts)
        assert [tuple(r) for r in got] == [tuple(r) for r in expected], table
        assert not await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE account_id = ANY($1::text[]) AND ledger_rows = 0 AND quantity <> 0",
            accounts)


async def _versions(pool: asyncpg.Pool, account_id: str) -> dict[date, int]:
    return await usage_store.day_versions(pool, account_id, date(2000, 1, 1), date(2100, 1, 1))


async def test_rollups_follow_every_kind_of_ledger_write(pool: asyncpg.Pool) -> None:
    a, b = await _account(pool), await _account(pool)
    # Across a month's end, in a year no other test writes.
    first = datetime(2031, 1, 31, 20, tzinfo=UTC)
    hours = [first + i * HOUR for i in range(10)]
    rows: list[usage_store.LedgerRecord] = [(f"n{i}.{a}", h, m, Decimal(i * 1000 + k) / 7, a, i != 2)
                                            for i in range(3) for k, h in enumerate(hours) for m in METRICS]
    rows += [(f"sys{secrets.token_hex(3)}", h, "actions", Decimal(5), None, False) for h in hours]  # no owner
    await usage_store.copy_ledger_rows(pool, rows)
    await _rollups_match_ledger(pool, [a, b])
    v1 = await _versions(pool, a)
    assert set(v1) == {date(2031, 1, 31), date(2031, 2, 1)}
    assert not await pool.fetchval("SELECT count(*) FROM usage_daily WHERE account_id IS NULL")

    # An upsert that adds to rows (as tests' add_usage does): UPDATE for existing keys, INSERT for new ones.
    await pool.executemany(
        """INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
           VALUES ($1, $2, $3, $4, $5, true)
           ON CONFLICT (namespace, hour, metric) DO UPDATE SET quantity = usage_ledger.quantity + EXCLUDED.quantity""",
        [(f"n0.{a}", hours[-1], "actions", Decimal(3), a), (f"n9.{a}", hours[-1], "actions", Decimal(4), a)])
    await _rollups_match_ledger(pool, [a, b])
    v2 = await _versions(pool, a)
    assert v2[date(2031, 1, 31)] == v1[date(2031, 1, 31)] and v2[date(2031, 2, 1)] != v1[date(2031, 2, 1)]

    # The collector's write: a provisional hour replaced (DELETE then COPY), then the final one.
    hour = hours[1]
    for final in (False, True):
        await usage_store.write_ledger_hour(pool, "actions", hour, ["actions"],
                                            [LedgerRow(f"n0.{a}", "actions", Decimal(11 + final), a)], final=final)
        await _rollups_match_ledger(pool, [a, b])
    v3 = await _versions(pool, a)
    assert v3[date(2031, 1, 31)] != v2[date(2031, 1, 31)]

    # A row moved to another owner, and rows deleted until a day has none.
    await pool.execute("UPDATE usage_ledger SET account_id = $1 WHERE namespace = $2 AND hour = $3", b,
                       f"n1.{a}", hours[0])
    await _rollups_match_ledger(pool, [a, b])
    await pool.execute("DELETE FROM usage_ledger WHERE account_id = $1 AND hour >= $2", a,
                       datetime(2031, 2, 1, tzinfo=UTC))
    await _rollups_match_ledger(pool, [a, b])
    assert await usage_store.account_daily_quantities(pool, a, [date(2031, 2, 1)]) == []
    assert (await _versions(pool, a))[date(2031, 2, 1)] != v3[date(2031, 2, 1)]


async def test_ledger_sums_from_rollups_equal_the_rows(pool: asyncpg.Pool) -> None:
    rnd = random.Random(17)
    a, other = await _account(pool), await _account(pool)
    now = floor_hour(datetime.now(UTC))
    start = now - 70 * DAY
    rows = []
    for h in range(90 * 24):  # the past 70 days and 20 to come: month to date subtracts the hours to come
        hour = start + h * HOUR
        for ns in (f"x.{a}", f"y.{a}", f"z.{other}"):
            for metric in METRICS:
                if rnd.random() < 0.7:
                    owner = other if ns.endswith(other) else a
                    rows.append((ns, hour, metric, Decimal(rnd.randrange(0, 10**12)) / 1000, owner,
                                 rnd.random() < 0.9))
    await usage_store.copy_ledger_rows(pool, rows)
    windows = [(now.replace(day=1, hour=0), now + timedelta(minutes=17)),  # the estimate
               (now.replace(day=1, hour=0) - timedelta(days=40), now.replace(day=1, hour=0)),
               (start - 5 * DAY, start + 95 * DAY)]
    for _ in range(60):
        lo = start - 3 * DAY + timedelta(minutes=rnd.randrange(0, 96 * 24 * 60))
        windows.append((lo, lo + timedelta(minutes=rnd.randrange(0, 50 * 24 * 60))))
    for lo, hi in windows:
        assert await usage_store.account_ledger_sums(pool, a, lo, hi) == \
            await invoices_store.ledger_sums(pool, a, lo, hi), (lo, hi)


def test_usage_json_written_directly_is_protobufs_mapping() -> None:
    rnd = random.Random(5)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for step, n in ((DAY, 4), (HOUR, 30)):
        entries = [LedgerEntry(f"ns{rnd.randrange(12)}.acme", start + rnd.randrange(n) * step, rnd.choice(METRICS),
                               rnd.choice([Decimal(0), Decimal(rnd.randrange(10**15)) / 10**rnd.randrange(6),
                                           Decimal(10**22)]))
                   for _ in range(300)]
        collected = {"actions": {start + i * HOUR for i in range(n * int(step / HOUR) // 2)},
                     "storage": {start + i * HOUR for i in range(n * int(step / HOUR))}}
        reference = usage_summaries.to_json(usage_summaries.summaries(entries, collected, start, start + n * step,
                                                                      step))
        written = []
        for i in range(n):
            bucket = start + i * step
            quantities: dict[str, dict[str, Decimal]] = {}
            for e in entries:
                if e.hour == bucket:
                    per_metric = quantities.setdefault(e.namespace, {})
                    per_metric[e.metric] = per_metric.get(e.metric, Decimal(0)) + e.quantity
            complete = all(h in collected[c] for c in collected for h in usage_summaries.hours_between(
                bucket, bucket + step))
            written.append(usage_summaries.summary_parts(bucket, bucket + step,
                                                         usage_summaries.record_groups_json(quantities), not complete))
        assert json.loads(usage_summaries.response_json(written, {})) == reference


def test_rendered_buckets_are_bounded_and_versioned() -> None:
    kept = usage_summaries.RenderedBuckets(max_bytes=10)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    kept.put(("a", "day", day), 1, b"12345")
    assert kept.get(("a", "day", day), 1) == b"12345" and kept.get(("a", "day", day), 2) is None
    kept.put(("a", "day", day + DAY), None, b"123456")
    assert kept.get(("a", "day", day), 1) is None and kept.get(("a", "day", day + DAY), None) == b"123456"
    assert kept.size == 6


async def _reference(pool: asyncpg.Pool, account_id: str, start: datetime, end: datetime,
                     step: timedelta) -> dict:  # type: ignore[type-arg]
    """The answer as the route computed it before the rollups: every row of the window, summed in Python."""
    rows = await pool.fetch("""SELECT namespace, hour, metric, quantity FROM usage_ledger
                                WHERE account_id = $1 AND hour >= $2 AND hour < $3""", account_id, start, end)
    collected: dict[str, set[datetime]] = {}
    for r in await pool.fetch("SELECT collector, hour FROM usage_collected_hours WHERE hour >= $1 AND hour < $2",
                              start, end):
        collected.setdefault(r["collector"], set()).add(r["hour"])
    items = usage_summaries.summaries((LedgerEntry(r["namespace"], r["hour"], r["metric"], r["quantity"])
                                       for r in rows), collected, start, end, step)
    return {**usage_summaries.to_json(items), "nextPageToken": ""}


async def test_usage_route_answers_the_rows_and_follows_changes(api: TestClient, pool: asyncpg.Pool) -> None:
    rnd = random.Random(3)
    a = await _account(pool)
    headers = await customer_headers(pool, a)
    start = datetime(2030, 3, 30, tzinfo=UTC)
    rows = [(f"{name}.{a}", start + h * HOUR, metric, Decimal(rnd.randrange(1, 10**9)), a, name != "free")
            for h in range(3 * 24) for name in ("orders", "billing", "free") for metric in METRICS
            if rnd.random() < 0.8]
    await usage_store.copy_ledger_rows(pool, rows)
    await pool.executemany("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           [(c, start + h * HOUR) for c in ("actions", "storage") for h in range(24 + 5)])
    daily = {"startTimeInclusive": "2030-03-29", "endTimeExclusive": "2030-04-02T00:00:00Z"}
    hourly = {"startTimeInclusive": "2030-03-30T20:00:00Z", "endTimeExclusive": "2030-03-31T06:00:00Z",
              "granularity": "hour"}
    for _ in range(2):  # rendered, then kept
        for params, step in ((daily, DAY), (hourly, HOUR)):
            resp = await api.get("/cloud/usage", params=params, headers=headers)
            assert resp.status == 200 and resp.content_type == "application/json"
            lo = datetime.fromisoformat(params["startTimeInclusive"].replace("Z", "+00:00")).replace(tzinfo=UTC)
            hi = datetime.fromisoformat(params["endTimeExclusive"].replace("Z", "+00:00"))
            assert await resp.json() == await _reference(pool, a, lo, hi, step)

    # A day already rendered changes (complete or not): the answer follows.
    await pool.execute("UPDATE usage_ledger SET quantity = quantity + 1 WHERE account_id = $1 AND hour = $2", a,
                       start + 23 * HOUR)
    await pool.execute("DELETE FROM usage_ledger WHERE account_id = $1 AND hour = $2", a, start + 25 * HOUR)
    for params, step in ((daily, DAY), (hourly, HOUR)):
        resp = await api.get("/cloud/usage", params=params, headers=headers)
        lo = datetime.fromisoformat(params["startTimeInclusive"].replace("Z", "+00:00")).replace(tzinfo=UTC)
        hi = datetime.fromisoformat(params["endTimeExclusive"].replace("Z", "+00:00"))
        assert await resp.json() == await _reference(pool, a, lo, hi, step)


async def test_truncating_the_ledger_empties_the_rollups(pool: asyncpg.Pool) -> None:
    a = await _account(pool)
    await usage_store.copy_ledger_rows(pool, [(f"t.{a}", datetime(2032, 5, 1, tzinfo=UTC), "actions", Decimal(1), a,
                                               True)])
    before = await _versions(pool, a)
    await pool.execute("TRUNCATE usage_ledger")
    for table in ("usage_daily", "usage_monthly", "usage_day_versions"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0
    await usage_store.copy_ledger_rows(pool, [(f"t.{a}", datetime(2032, 5, 1, tzinfo=UTC), "actions", Decimal(1), a,
                                               True)])
    assert (await _versions(pool, a))[date(2032, 5, 1)] > before[date(2032, 5, 1)]  # never an old version again
