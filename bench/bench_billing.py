"""A monthly billing run of N accounts against localstripe, through Temporal and as a bare asyncio loop.

    .venv/bin/python -m bench.bench_billing [--accounts 10000] [--concurrency 50]   # from the repo root

Starts its own Temporal dev server, embedded Postgres and localstripe (no persistence, as the test fixtures
run it) in a temp dir. Set-up, not timed: N accounts on the payg plan with usage in two months, their Stripe
customers with a card, and their subscriptions (so both runs make exactly the same Stripe calls). Then:

1. the billing run ``billing-run/<month A>`` through the real worker (in this process), timed;
2. the same activity code (record, send, collect) for month B called from a bare asyncio loop with the
   same concurrency and the same pool size, without Temporal, timed.

Prints wall time, invoices/s, the ratio of the two, and the Temporal actions the run consumed per
account-month (from the dev server's ``action`` counter for the control namespace). localstripe serves about
120 calls/s on these machines; each invoice costs about 6 Stripe calls, which bounds both runs.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
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
from activities.billing_stripe import StripeSync
from tcloud.clients import stripe_client
from tcloud.db import create_pool
from tcloud.local import procs
from tcloud.settings import Settings
from tcloud.temporal import connect
from tests import harness
from tests.billing_helpers import add_usage, complete_hours, make_account
from workers.main import run_worker
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

PERIOD_TEMPORAL, PERIOD_BARE = "2026-01", "2026-02"
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


async def set_up(pool: asyncpg.Pool, api: stripe.StripeClient, n: int) -> list[str]:
    ids: list[str] = [""] * n

    async def account(i: int) -> None:
        made = await make_account(pool, api, plan="payg", account_id=f"bench{i:06d}{secrets.token_hex(2)}")
        for period in (PERIOD_TEMPORAL, PERIOD_BARE):
            await add_usage(pool, made.id, period, actions=1_000_000 + 997 * i, active_byte_hours=10**11 + i,
                            namespaces=1)
        async with pool.acquire() as conn:
            await StripeSync(conn, api, "setup").ensure_subscription(made.id, made.customer)
        ids[i] = made.id

    await bounded(n, 20, account)
    for period in (PERIOD_TEMPORAL, PERIOD_BARE):
        await complete_hours(pool, period)
    return ids


async def bare_loop(acts: BillingActivities, ids: list[str], concurrency: int) -> None:
    async def invoice(i: int) -> None:
        summary = await acts.record_invoice(AccountPeriod(ids[i], PERIOD_BARE))
        if summary.total_cents > 0:
            await acts.send_invoice(InvoiceRef(summary.invoice_id))
            await acts.collect_payment(InvoiceRef(summary.invoice_id))

    await bounded(len(ids), concurrency, invoice)


async def run(n: int, concurrency: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    for part in ("temporal", "localstripe"):
        (root / part).mkdir()
    pg = harness.Postgres(root / "pg")
    temporal = harness.TemporalServer(root / "temporal", namespaces=(CONTROL_NAMESPACE,))
    fake = harness.LocalStripe(root / "localstripe")
    try:
        pg.start()
        temporal.start()
        fake.start()
        conn = await asyncpg.connect(pg.server_dsn)
        await conn.execute('CREATE DATABASE "bench"')
        await conn.close()
        settings = Settings(state_dir=root, temporal_address=temporal.address, control_namespace=CONTROL_NAMESPACE,
                            task_queue="bench-billing", postgres_dsn=SecretStr(pg.dsn("bench")),
                            stripe_api_base=fake.url, schedules_enabled=False,
                            worker_metrics_port=procs.free_port(), billing_max_concurrent=concurrency)
        pool = await create_pool(settings.postgres_dsn.get_secret_value(), max_size=10)
        async with aiohttp.ClientSession() as session:
            api = stripe_client(settings, session)
            t = time.monotonic()
            ids = await set_up(pool, api, n)
            print(f"set-up: {n} accounts, customers, cards, subscriptions, 2 months of usage in "
                  f"{time.monotonic() - t:.1f} s (not timed below)")

            stop = asyncio.Event()
            worker = asyncio.create_task(run_worker(settings, stop=stop))
            client = await connect(settings)
            await asyncio.sleep(2)
            before = control_actions(temporal.ports.metrics)
            t = time.monotonic()
            result = await client.execute_workflow(
                BillingRunWorkflow.run, BillingRunInput(period=PERIOD_TEMPORAL, grace_hours=0,
                                                        max_concurrent=concurrency),
                id=billing_run_id(PERIOD_TEMPORAL), task_queue=settings.task_queue)
            temporal_s = time.monotonic() - t
            await asyncio.sleep(5)  # the server flushes its counters every few seconds
            actions = control_actions(temporal.ports.metrics) - before
            stop.set()
            await worker

            t = time.monotonic()
            await bare_loop(BillingActivities(pool=pool, stripe_client=api), ids, concurrency)
            bare_s = time.monotonic() - t
        paid = {p: await pool.fetchval("SELECT count(*) FROM invoices WHERE period = $1 AND status = 'paid'", p)
                for p in (PERIOD_TEMPORAL, PERIOD_BARE)}
        await pool.close()
        print(f"run result: {result.counts}; paid invoices: temporal {paid[PERIOD_TEMPORAL]}, bare {paid[PERIOD_BARE]}")
        print(f"accounts:                     {n} (concurrency {concurrency})")
        print(f"temporal run wall time:       {temporal_s:.1f} s   {n / temporal_s:.1f} invoices/s")
        print(f"bare asyncio loop wall time:  {bare_s:.1f} s   {n / bare_s:.1f} invoices/s")
        print(f"ratio temporal / bare:        {temporal_s / bare_s:.2f}x")
        print(f"temporal actions:             {actions:.0f} total, {actions / n:.2f} per account-month "
              f"(target <= 15)")
    finally:
        fake.stop()
        temporal.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.accounts, args.concurrency))


if __name__ == "__main__":
    main()
