"""The customer API under load: fixed-rate open-loop requests against the real API process and PostgreSQL.

    .venv/bin/python -m bench.bench_api [--rate 200] [--seconds 20] [--accounts 1000] [--namespaces 100]
                                        [--days 365] [--engine server|dev] [--only usage-day,upcoming,...]
                                        [--data-dir DIR]

Starts its own embedded PostgreSQL and Temporal (the official server on that PostgreSQL, as the platform runs it,
or with ``--engine dev`` the CLI's dev server; none of the measured routes calls Temporal, the API only connects at
start) in a temp dir. Set-up, not timed: ``--accounts`` accounts, one of them (``bigco``) with ``--namespaces``
namespaces and the others with one each; ``--days`` days of hourly ledger rows (three metrics) for every namespace
up to the current hour, bulk-loaded with COPY (``tcloud.store.usage.copy_ledger_rows``), every past hour collected
by both collectors; an invoice (``record_invoice``) per account for each month that ended within those days.

With ``--data-dir DIR`` the loaded PostgreSQL is kept in DIR, and a later run with the same DIR measures again
without the set-up (about 10 minutes on the 2-core machine for the default shape).

Then the API runs as its own process (``python -m api.main``, a fresh one per route) and this process sends
requests as ``bigco`` at a fixed rate (open loop: request i is due at ``start + i / rate`` whatever the earlier ones
did, and its latency is counted from that due time, so a stalled server cannot hide behind a waiting client) for a
warm-up, then for ``--seconds``. Printed per route: requests, errors (non-2xx, timeouts, connection failures), p50,
p99 and max latency, and the answer's size; and before the load, the time of the first request to the fresh process
(nothing rendered or cached yet) and the mean of 20 more one after the other.

Routes: ``namespaces`` GET /cloud/namespaces (all 100), ``usage-day`` GET /cloud/usage per day over the last 30
days and today, ``usage-hour`` per hour over the last 24 hours and this one, ``upcoming`` GET
/cloud/billing/upcoming (month to date), ``invoices`` GET /cloud/billing/invoices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
from pydantic import SecretStr

from api import jwt
from bench.bench_billing import CONTROL_NAMESPACE, DevServer
from launcher import procs
from tcloud.domain.billing_period import period_bounds, period_of
from tcloud.domain.metering import floor_hour
from tcloud.platform.db import create_pool
from tcloud.services.invoicing import record_invoice
from tcloud.settings import Settings
from tcloud.store import accounts as accounts_store
from tcloud.store import usage as usage_store
from tests import harness

BIG = "bigco"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
METRICS = ("actions", "active_storage", "retained_storage")
# A small set of quantities, cycled: building a Decimal per row would cost more than the COPY itself.
_QUANTITIES = {
    "actions": [Decimal(1_000 + 37 * i) for i in range(97)],
    "active_storage": [Decimal(2_000_000_000 + 7_919 * i) for i in range(89)],
    "retained_storage": [Decimal(40_000_000_000 + 104_729 * i) for i in range(83)],
}


@dataclass
class Route:
    name: str
    path: str
    params: dict[str, str] = field(default_factory=dict)


def routes(now: datetime) -> list[Route]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    this_hour = floor_hour(now)
    return [
        Route("namespaces", "/cloud/namespaces"),
        Route("usage-day", "/cloud/usage", {"startTimeInclusive": (today - 30 * DAY).isoformat(),
                                            "endTimeExclusive": (today + DAY).isoformat()}),
        Route("usage-hour", "/cloud/usage", {"granularity": "hour",
                                             "startTimeInclusive": (this_hour - 24 * HOUR).isoformat(),
                                             "endTimeExclusive": (this_hour + HOUR).isoformat()}),
        Route("upcoming", "/cloud/billing/upcoming"),
        Route("invoices", "/cloud/billing/invoices"),
    ]


# --- set-up -----------------------------------------------------------------------------------------------------


def account_ids(n: int) -> list[str]:
    return [BIG] + [f"acct{i:05d}" for i in range(1, n)]


def namespaces_of(account: str, big_namespaces: int) -> list[str]:
    return [f"ns{i:03d}.{account}" for i in range(big_namespaces)] if account == BIG else [f"main.{account}"]


def ledger_day(owners: list[tuple[str, str]], day: datetime, until: datetime) -> Iterator[usage_store.LedgerRecord]:
    """One day's hourly rows (before ``until``) of every ``(namespace, account)``, three metrics each."""
    for h in range(24):
        hour = day + h * HOUR
        if hour >= until:
            return
        seed = int(hour.timestamp()) // 3600
        for i, (ns, account) in enumerate(owners):
            for metric in METRICS:
                values = _QUANTITIES[metric]
                yield ns, hour, metric, values[(seed + 31 * i) % len(values)], account, True


async def set_up(pool: asyncpg.Pool, n_accounts: int, big_namespaces: int, days: int, now: datetime) -> str:
    """Accounts, namespaces, the ledger, collected hours and past invoices; returns ``bigco``'s API key."""
    this_hour = floor_hour(now)
    first_day = (this_hour - days * DAY).replace(hour=0)
    created = first_day - 30 * DAY
    ids = account_ids(n_accounts)
    t = time.monotonic()
    # Set-up SQL of the bench's own (tests and benches may write their fixtures directly).
    await pool.executemany(
        "INSERT INTO accounts (id, name, email, plan, created_at) VALUES ($1, $1, $2, $3, $4)",
        [(a, f"ops@{a}.example", "business" if a == BIG else "essentials", created) for a in ids])
    owners = [(ns, a) for a in ids for ns in namespaces_of(a, big_namespaces)]
    await pool.executemany(
        """INSERT INTO namespaces (namespace, name, account_id, state, retention_days, created_at)
           VALUES ($1, split_part($1, '.', 1), $2, 'active', 30, $3)""", [(ns, a, created) for ns, a in owners])
    await pool.executemany(
        "INSERT INTO namespace_ownership (namespace, account_id, valid_from) VALUES ($1, $2, $3)",
        [(ns, a, created) for ns, a in owners])
    key = await accounts_store.issue_key(pool, BIG, display_name="bench")
    print(f"  {len(ids)} accounts, {len(owners)} namespaces in {time.monotonic() - t:.1f} s", flush=True)

    t = time.monotonic()
    rows = 0
    copies = asyncio.Semaphore(2)  # two COPY streams keep both cores busy (one encodes while the other inserts)

    async def copy_day(day: datetime) -> None:
        nonlocal rows
        async with copies:
            batch = list(ledger_day(owners, day, this_hour))
            await usage_store.copy_ledger_rows(pool, batch)
            rows += len(batch)
            if (day - first_day).days % 60 == 59:
                print(f"  ledger: day {(day - first_day).days + 1}, {rows:,} rows so far", flush=True)

    await asyncio.gather(*(copy_day(first_day + d * DAY) for d in range((this_hour - first_day) // DAY + 1)))
    await pool.execute(
        """INSERT INTO usage_collected_hours (collector, hour)
           SELECT c, h FROM unnest(ARRAY['actions', 'storage']) c,
                  generate_series($1::timestamptz, $2::timestamptz - interval '1 hour', interval '1 hour') h""",
        first_day, this_hour)
    size = await pool.fetchval("SELECT pg_size_pretty(pg_total_relation_size('usage_ledger'))")
    print(f"  ledger: {rows:,} rows ({size} with indexes) in {time.monotonic() - t:.1f} s", flush=True)

    t = time.monotonic()
    periods = []
    month = period_of(first_day)
    while period_bounds(month)[1] <= this_hour:
        if period_bounds(month)[0] >= first_day:
            periods.append(month)
        month = period_of(period_bounds(month)[1])
    gate = asyncio.Semaphore(4)

    async def invoice(account: str, period: str) -> None:
        async with gate:
            await record_invoice(pool, account, period)

    await asyncio.gather(*(invoice(a, p) for a in ids for p in periods))
    print(f"  invoices: {len(ids) * len(periods):,} ({len(periods)} months each) in {time.monotonic() - t:.1f} s",
          flush=True)
    t = time.monotonic()
    await pool.execute("VACUUM (ANALYZE)")  # now, rather than autovacuum during the measurement
    print(f"  vacuum and analyze in {time.monotonic() - t:.1f} s", flush=True)
    return key.token


# --- the API process --------------------------------------------------------------------------------------------


class ApiProcess:
    """``python -m api.main`` with the bench's settings, on a free port."""

    def __init__(self, settings: Settings, log: Path) -> None:
        # The Cloud Ops gRPC port too: its default (3001) is the local platform's.
        self.settings = settings.model_copy(update={"api_port": procs.free_port(), "cloud_api_port": procs.free_port()})
        env = {**os.environ, **harness.settings_env(self.settings)}
        self.managed = harness.Managed(procs.Process("api", [sys.executable, "-m", "api.main"], log, env=env,
                                                     cwd=Path(__file__).resolve().parents[1]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def __enter__(self) -> ApiProcess:
        popen = self.managed.start()
        procs.wait_until(lambda: procs.http_ok(self.url + "/healthz"), timeout=60, what="api", proc=popen,
                         log=self.managed.proc.log)
        return self

    def __exit__(self, *exc: object) -> None:
        self.managed.stop()


# --- the load ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, from the due time to the whole answer read
    errors: int = 0
    first_error: str = ""
    size: int = 0


async def one(session: aiohttp.ClientSession, url: str, route: Route, due: float, result: Result | None) -> None:
    try:
        async with session.get(url + route.path, params=route.params) as resp:
            body = await resp.read()
            ok = resp.status == 200
            detail = f"{resp.status} {body[:200]!r}"
    except (TimeoutError, aiohttp.ClientError) as err:
        ok, body, detail = False, b"", repr(err)
    done = time.perf_counter()
    if result is None:
        return
    if ok:
        result.latencies.append(done - due)
        result.size = len(body)
    else:
        result.errors += 1
        result.first_error = result.first_error or detail


# Requests waiting for an answer beyond this are not sent and count as errors (a server far behind would otherwise
# gather thousands of connections).
MAX_IN_FLIGHT = 1000


async def open_loop(session: aiohttp.ClientSession, url: str, route: Route, rate: float, seconds: float,
                    result: Result | None) -> None:
    """Request ``route`` at ``rate`` per second for ``seconds``, each on its own schedule; wait for every answer."""
    start = time.perf_counter() + 0.05
    tasks: set[asyncio.Task[None]] = set()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_IN_FLIGHT:
            if result is not None:
                result.errors += 1
                result.first_error = result.first_error or f"not sent: {MAX_IN_FLIGHT} requests in flight"
            continue
        task = asyncio.create_task(one(session, url, route, due, result))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def sequential_ms(session: aiohttp.ClientSession, url: str, route: Route, n: int = 21) -> tuple[float, float]:
    """The first request to a fresh API process (nothing kept yet), and the mean of ``n - 1`` more one after the
    other: the service time without queueing."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        async with session.get(url + route.path, params=route.params) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{route.name}: {resp.status} {await resp.text()}")
        times.append(time.perf_counter() - t)
    return times[0] * 1000, statistics.mean(times[1:]) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(url: str, key: str, route: Route, rate: float, seconds: float, warmup: float,
               request_timeout: float) -> tuple[tuple[float, float], Result]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {key}"},
                                     timeout=aiohttp.ClientTimeout(total=request_timeout)) as session:
        service = await sequential_ms(session, url, route)
        await open_loop(session, url, route, rate, warmup, None)
        result = Result()
        await open_loop(session, url, route, rate, seconds, result)
    return service, result


# --- main -------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    data: Path = args.data_dir or root
    pg = harness.Postgres(data / "pg")
    made = data / "bench-api.json"  # the set-up kept in --data-dir: the API key and when it was made
    temporal: harness.TemporalServer | DevServer | None = None
    try:
        pg.start()
        if args.engine == "dev":
            temporal = DevServer(root / "temporal")
        else:
            jwks = root / "jwks.json"
            jwks.write_text(json.dumps(jwt.jwks(Settings(state_dir=root))))
            temporal = harness.TemporalServer(root / "temporal", server_dsn=pg.server_dsn, jwks_uri=jwks.as_uri(),
                                              namespaces=(CONTROL_NAMESPACE,))
        temporal.start()
        settings = Settings(state_dir=root, temporal_address=temporal.address, control_namespace=CONTROL_NAMESPACE,
                            postgres_dsn=SecretStr(pg.dsn("bench_api")), schedules_enabled=False,
                            operator_token=SecretStr(secrets.token_hex(16)),
                            prometheus_url="http://127.0.0.1:9", stripe_api_base="http://127.0.0.1:9")
        now = datetime.now(UTC)
        if made.exists():
            kept = json.loads(made.read_text())
            key = kept["key"]
            print(f"set-up kept in {data} (made {kept['made']}: {kept['shape']}), engine {args.engine}", flush=True)
            pool = await create_pool(settings.postgres_dsn.get_secret_value())  # migrations since then
            await pool.close()
        else:
            print(f"set-up (not timed below), engine {args.engine}:", flush=True)
            conn = await asyncpg.connect(pg.server_dsn)
            await conn.execute('CREATE DATABASE "bench_api"')
            await conn.close()
            t = time.monotonic()
            pool = await create_pool(settings.postgres_dsn.get_secret_value())
            try:
                key = await set_up(pool, args.accounts, args.namespaces, args.days, now)
            finally:
                await pool.close()
            print(f"  set-up done in {time.monotonic() - t:.1f} s", flush=True)
            if args.data_dir:
                made.write_text(json.dumps({"key": key, "made": now.isoformat(timespec="minutes"), "shape": (
                    f"{args.accounts} accounts, {args.namespaces} namespaces measured, {args.days} days")}))

        chosen = [r for r in routes(now) if not args.only or r.name in args.only.split(",")]
        print(f"\nopen loop at {args.rate:g} requests/s per route, {args.warmup:g} s warm-up then {args.seconds:g} s "
              f"measured, one fresh API process per route; latency from each request's due time\n")
        header = (f"{'route':<12} {'first ms':>9} {'then ms':>8} {'requests':>9} {'errors':>7} {'p50 ms':>8} "
                  f"{'p99 ms':>8} {'max ms':>8} {'answer':>9}")
        lines = [header, "-" * len(header)]
        print(header, flush=True)
        for route in chosen:
            with ApiProcess(settings, root / f"api-{route.name}.log") as api:
                service, result = await load(api.url, key, route, args.rate, args.seconds, args.warmup,
                                             args.timeout)
            if result.latencies:
                ms = [percentile(result.latencies, q) * 1000 for q in (0.5, 0.99, 1.0)]
                stats = f"{ms[0]:8.1f} {ms[1]:8.1f} {ms[2]:8.1f}"
            else:
                stats = f"{'-':>8} {'-':>8} {'-':>8}"
            line = (f"{route.name:<12} {service[0]:9.1f} {service[1]:8.1f} {len(result.latencies) + result.errors:9d} "
                    f"{result.errors:7d} {stats} {result.size / 1024:7.0f}KB")
            lines.append(line)
            print(line, flush=True)
            if result.first_error:
                print(f"  first error: {result.first_error}", flush=True)
        print("\n" + "\n".join(lines))
    finally:
        if temporal is not None:
            temporal.stop()
        if args.data_dir:
            procs.stop_embedded_postgres(data / "pg")  # kept for the next run
        else:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second per route")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per route")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--timeout", type=float, default=10.0, help="a request not answered by then is an error")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100, help="namespaces of the measured account")
    parser.add_argument("--days", type=int, default=365, help="days of hourly ledger rows")
    parser.add_argument("--engine", choices=["server", "dev"], default="server")
    parser.add_argument("--only", default="", help="comma-separated route names")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the loaded PostgreSQL here; a later run with the same directory skips the set-up")
    args = parser.parse_args()
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
