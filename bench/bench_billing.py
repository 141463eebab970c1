"""A monthly billing run of N accounts against localstripe, through Temporal and as a bare asyncio loop.

    .venv/bin/python -m bench.bench_billing [--accounts 10000] [--concurrency 50] [--engine server|dev]

Starts its own Temporal (the official server on the same embedded PostgreSQL, as the platform and the tests run
it, or with ``--engine dev`` the CLI's dev server on SQLite), embedded Postgres and localstripe (no persistence, as
the test fixtures run it) in a temp dir. Set-up, not timed: N accounts on the payg plan with a month of usage,
their Stripe customers with a card (so both make exactly the same Stripe calls). Then:

1. the billing run ``billing-run/<month>`` through the real worker (in this process), timed;
2. the same activity code (record, send, collect) called from a bare asyncio loop with the same concurrency
   and the same pool size, without Temporal, timed.

Each gets its own database and its own fresh localstripe holding the same N accounts.

Prints wall time, invoices/s, the ratio of the two, and the Temporal actions the run consumed per
account-month (from the server's ``action`` counter for the control namespace). Each invoice costs about
6 Stripe calls; localstripe's list calls scan every object of the listed type (launcher.stripe_fake), so
both runs slow down somewhat as N grows. 10,000 accounts take 3-7 minutes to set up and 10-30 to run. On a disk
shared with other databases both runs wait on fsync; ``TMPDIR=/dev/shm`` keeps every part's data in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import asyncpg
import stripe
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from activities.billing import AccountPeriod, BillingActivities, InvoiceRef
from api import jwt
from launcher import procs
from tcloud.platform.clients import stripe_client
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect
from tcloud.settings import Settings
from tests import harness
from tests.billing_helpers import add_usage, complete_hours, make_account
from workers.main import run_worker
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

PERIOD = "2026-01"
CONTROL_NAMESPACE = "tcloud-system"
CONTROL_LABEL = "tcloud_system"


def control_actions(metrics_port: int) -> float:
    """The dev server's billable ``action`` counter summed over the control namespace's series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # Temporal's metrics sanitize label values: "tcloud-system" appears as "tcloud_system".
            if sample.name in ("action", "action_total") and sample.labels.get("namespace") == CONTROL_LABEL:
                total += sample.value
    return total


async def bounded(n: int, concurrency: int, work):  # type: ignore[no-untyped-def]
    """Run ``work(i)`` for i in range(n), at most ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await work(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def set_up(pool: asyncpg.Pool, api: stripe.StripeClient, n: int, period: str) -> list[str]:
    ids: list[str] = [""] * n

    async def account(i: int) -> None:
        made = await make_account(pool, api, plan="payg", account_id=f"bench{i:06d}")
        await add_usage(pool, made.id, period, actions=1_000_000 + 997 * i, active_byte_hours=10**11 + i,
                        namespaces=1)
        ids[i] = made.id
        if (i + 1) % 1000 == 0:
            print(f"  set-up: {i + 1} accounts", flush=True)

    await bounded(n, 20, account)
    await complete_hours(pool, period)
    return ids


async def bare_loop(acts: BillingActivities, ids: list[str], period: str, concurrency: int) -> None:
    async def invoice(i: int) -> None:
        summary = await acts.record_invoice(AccountPeriod(ids[i], period))
        if summary.total_cents > 0:
            await acts.send_invoice(InvoiceRef(summary.invoice_id))
            await acts.collect_payment(InvoiceRef(summary.invoice_id))

    await bounded(len(ids), concurrency, invoice)


async def temporal_run(settings: Settings, metrics_port: int, period: str, n: int,
                       concurrency: int) -> tuple[float, float, dict[str, int]]:
    """The billing run through the real worker: (wall seconds, actions consumed, the run's counts)."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    client = await connect(settings)
    await asyncio.sleep(2)
    before = control_actions(metrics_port)
    t = time.monotonic()
    result = await client.execute_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=period, grace_hours=0, max_concurrent=concurrency),
        id=billing_run_id(period), task_queue=settings.task_queue)
    seconds = time.monotonic() - t
    await asyncio.sleep(5)  # the server flushes its counters every few seconds
    actions = control_actions(metrics_port) - before
    stop.set()
    await worker
    return seconds, actions, result.counts


class DevServer:
    """The CLI's dev server (SQLite, one door, no authorization) for a side-by-side figure."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.ports = procs.TemporalPorts(grpc=procs.free_port(), ui=procs.free_port(), http=procs.free_port(),
                                         metrics=procs.free_port())
        self.proc = procs.temporal_process(db_file=root / "temporal.db", ports=self.ports, log=root / "temporal.log",
                                           namespaces=(CONTROL_NAMESPACE,), headless=True)
        self.managed = harness.Managed(self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def start(self) -> None:
        popen = self.managed.start()
        procs.wait_until(lambda: procs.temporal_ready(self.ports), timeout=60, what="temporal", proc=popen,
                         log=self.proc.log)

    def stop(self) -> None:
        self.managed.stop()


async def run(n: int, concurrency: int, engine: str) -> None:
    """Each run gets its own database and its own fresh localstripe with the same N accounts: localstripe's
    list calls scan every object of a type, so sharing one would slow whichever run goes second."""
    root = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    for part in ("temporal", "stripe-temporal", "stripe-bare"):
        (root / part).mkdir()
    pg = harness.Postgres(root / "pg")
    fakes = {"temporal": harness.LocalStripe(root / "stripe-temporal"),
             "bare": harness.LocalStripe(root / "stripe-bare")}
    temporal: harness.TemporalServer | DevServer | None = None
    try:
        pg.start()
        if engine == "dev":
            temporal = DevServer(root / "temporal")
        else:
            jwks = root / "jwks.json"
            jwks.write_text(json.dumps(jwt.jwks(Settings(state_dir=root))))
            temporal = harness.TemporalServer(root / "temporal", server_dsn=pg.server_dsn, jwks_uri=jwks.as_uri(),
                                              namespaces=(CONTROL_NAMESPACE,))
        temporal.start()
        print(f"engine: {engine} ({'dev server on SQLite' if engine == 'dev' else 'official server on PostgreSQL'})")
        conn = await asyncpg.connect(pg.server_dsn)
        for name in fakes:
            fakes[name].start()
            await conn.execute(f'CREATE DATABASE "bench_{name}"')
        await conn.close()
        settings = {name: Settings(
            state_dir=root, temporal_address=temporal.address, control_namespace=CONTROL_NAMESPACE,
            task_queue="bench-billing", postgres_dsn=SecretStr(pg.dsn(f"bench_{name}")),
            stripe_api_base=fake.url, schedules_enabled=False, worker_metrics_port=procs.free_port(),
            billing_max_concurrent=concurrency) for name, fake in fakes.items()}
        async with aiohttp.ClientSession() as session:
            pools = {name: await create_pool(s.postgres_dsn.get_secret_value(), max_size=10)
                     for name, s in settings.items()}
            apis = {name: stripe_client(s, session) for name, s in settings.items()}
            t = time.monotonic()
            # Both at once: each has its own localstripe process.
            made = await asyncio.gather(*(set_up(pools[name], apis[name], n, PERIOD) for name in fakes))
            ids = dict(zip(fakes, made, strict=True))
            print(f"set-up (not timed below): twice {n} accounts with Stripe customers, cards and "
                  f"a month of usage, in {time.monotonic() - t:.1f} s")
            temporal_s, actions, counts = await temporal_run(settings["temporal"], temporal.ports.metrics, PERIOD,
                                                             n, concurrency)
            t = time.monotonic()
            await bare_loop(BillingActivities(pool=pools["bare"], stripe_client=apis["bare"]), ids["bare"], PERIOD,
                            concurrency)
            bare_s = time.monotonic() - t
            paid = {name: await pool.fetchval("SELECT count(*) FROM invoices WHERE status = 'paid'")
                    for name, pool in pools.items()}
            for pool in pools.values():
                await pool.close()
        print(f"run result: {counts}; paid invoices: temporal {paid['temporal']}, bare {paid['bare']}")
        print(f"accounts:                     {n} (concurrency {concurrency})")
        print(f"temporal run wall time:       {temporal_s:.1f} s   {n / temporal_s:.1f} invoices/s")
        print(f"bare asyncio loop wall time:  {bare_s:.1f} s   {n / bare_s:.1f} invoices/s")
        print(f"ratio temporal / bare:        {temporal_s / bare_s:.2f}x")
        print(f"temporal actions:             {actions:.0f} total, {actions / n:.2f} per account-month "
              f"(target <= 15)")
    finally:
        for fake in fakes.values():
            fake.stop()
        if temporal is not None:
            temporal.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--engine", choices=["server", "dev"], default="server")
    args = parser.parse_args()
    asyncio.run(run(args.accounts, args.concurrency, args.engine))


if __name__ == "__main__":
    main()
