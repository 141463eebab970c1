"""Kill -9 the real worker process at random moments during a billing run of 120 accounts, several times:
exactly one Stripe invoice and one payment per account and period, totals equal to the ledger's."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import asyncpg
import pytest
import stripe
from temporalio.client import Client

from launcher import procs
from tcloud.services.invoicing import invoice_id_for, price_account_month
from tcloud.settings import Settings
from tests import harness
from tests.billing_helpers import add_usage, complete_hours, make_account, stripe_invoices_for, succeeded_charges
from tests.figures import Figures
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

PERIOD = "2025-04"
ACCOUNTS = 120
KILLS = 4


async def start_worker(settings: Settings, log: Path) -> harness.Managed:
    managed = harness.worker_process(settings, log)
    managed.start()
    await asyncio.to_thread(harness.wait_worker_ready, settings, managed, 90)
    return managed


@pytest.mark.timeout(900)
async def test_kill_9_during_a_run_never_invoices_or_charges_twice(
        settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, temporal_client: Client,
        tmp_path: Path, figures: Figures) -> None:
    rng = random.Random()
    accounts = []
    for i in range(ACCOUNTS):
        account = await make_account(pool, stripe_api, plan=("payg", "essentials", "business")[i % 3])
        await add_usage(pool, account.id, PERIOD, actions=rng.randrange(0, 30_000_000),
                        active_byte_hours=rng.randrange(0, 5000) * 10**9, namespaces=1 + i % 2)
        accounts.append(account)
    await complete_hours(pool, PERIOD)
    # Own metrics port: the in-process runtime of other modules may hold the default one.
    child_settings = settings.model_copy(update={"worker_metrics_port": procs.free_port()})
    worker = await start_worker(child_settings, tmp_path / "worker-0.log")
    handle = await temporal_client.start_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=PERIOD, grace_hours=0, max_concurrent=4, page_size=50,
                                                accounts_per_run=60, batch_size=3, batch_concurrency=1),
        id=billing_run_id(PERIOD), task_queue=settings.task_queue)
    kills = 0
    try:
        for n in range(1, KILLS + 1):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            done = await pool.fetchval("SELECT count(*) FROM invoices WHERE status IN ('paid', 'zero')")
            if done == ACCOUNTS:
                break
            worker.kill()
            kills += 1
            worker = await start_worker(child_settings, tmp_path / f"worker-{n}.log")
        result = await asyncio.wait_for(handle.result(), timeout=600)
    finally:
        worker.stop()
    figures.add("faults injected", kills)
    assert kills >= 2, "the run finished before the worker could be killed twice: raise ACCOUNTS"
    assert result.phase == "done"
    assert sum(result.counts.values()) == ACCOUNTS

    for account in accounts:
        invoice_id = invoice_id_for(account.id, PERIOD)
        inv = await pool.fetchrow("SELECT status, total_cents, stripe_invoice_id FROM invoices WHERE id = $1",
                                  invoice_id)
        expected = (await price_account_month(pool, account.id, PERIOD)).priced.total_cents
        assert inv["total_cents"] == expected, account.id
        stripe_invs = await stripe_invoices_for(stripe_api, account.customer, invoice_id)
        charges = await succeeded_charges(stripe_api, account.customer)
        if expected == 0:
            assert inv["status"] == "zero" and stripe_invs == [] and charges == []
            continue
        assert inv["status"] == "paid", account.id
        assert [s["id"] for s in stripe_invs] == [inv["stripe_invoice_id"]], account.id
        assert stripe_invs[0]["total"] == expected and stripe_invs[0]["status"] == "paid"
        assert [c["amount"] for c in charges] == [expected], account.id
        pending = await stripe_api.v1.invoice_items.list_async({"customer": account.customer})
        assert pending.data == [], f"{account.id} has invoice items left pending"
    figures.add("invoices checked", len(accounts))
