"""Billing runs that cannot get stuck: months the platform never metered are refused, a run can be cancelled
without leaving a half-made invoice, and a run's status answers quickly without a worker."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import stripe
from aiohttp.test_utils import TestClient
from temporalio.client import Client

from tcloud.services.invoicing import record_invoice
from tcloud.settings import Settings
from tests import harness
from tests.billing_helpers import (
    add_usage,
    complete_hours,
    make_account,
    stripe_invoices_for,
    succeeded_charges,
    wait_until,
)
from tests.figures import Figures
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

FIRST = "2025-04"  # metering began with this month in this module's database
CANCELLED = "2025-05"
NO_WORKER = "2025-06"
ORPHAN = "2025-07"


async def test_months_never_metered_are_refused(api: TestClient, operator_headers: dict[str, str],
                                                pool: asyncpg.Pool) -> None:
    nothing = await api.post("/admin/billing/runs", headers=operator_headers, json={"period": "2025-03"})
    assert nothing.status == 400 and "not been collected" in (await nothing.json())["message"]
    await complete_hours(pool, FIRST)
    before = await api.post("/admin/billing/runs", headers=operator_headers, json={"period": "2025-03"})
    body = await before.json()
    assert before.status == 400 and "before metering began" in body["message"] and FIRST in body["message"]
    too_early = await api.post("/admin/billing/runs", headers=operator_headers, json={"period": "2019-01"})
    assert too_early.status == 400
    assert (await api.get("/admin/billing/runs/2025-03", headers=operator_headers)).status == 404
    assert (await api.post("/admin/billing/runs/2025-03/cancel", headers=operator_headers)).status == 404


async def test_a_cancelled_run_invoices_each_account_fully_once_or_not_at_all(
        api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        worker: None, settings: Settings, temporal_client: Client) -> None:
    await complete_hours(pool, FIRST)
    accounts = [await make_account(pool, stripe_api, plan="payg") for _ in range(8)]
    for account in accounts:
        await add_usage(pool, account.id, CANCELLED, actions=1_000_000)
    await complete_hours(pool, CANCELLED)
    await temporal_client.start_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=CANCELLED, grace_hours=0, max_concurrent=1, batch_size=1,
                                                batch_concurrency=1),
        id=billing_run_id(CANCELLED), task_queue=settings.task_queue)

    async def some_invoiced() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM invoices WHERE period = $1", CANCELLED))

    await wait_until(some_invoiced, seconds=60, what="the first invoice")
    cancelled = await api.post(f"/admin/billing/runs/{CANCELLED}/cancel", headers=operator_headers)
    assert cancelled.status == 202, await cancelled.text()

    async def run_cancelled() -> bool:
        body = await (await api.get(f"/admin/billing/runs/{CANCELLED}", headers=operator_headers)).json()
        return bool(body["status"] == "cancelled")

    await wait_until(run_cancelled, seconds=60, what="the run to end cancelled")
    # The run wrote its own end to Postgres (what the API answers from when the server is slow to describe it).
    assert await pool.fetchval("SELECT status FROM billing_runs WHERE period = $1", CANCELLED) == "cancelled"
    again = await api.post(f"/admin/billing/runs/{CANCELLED}/cancel", headers=operator_headers)
    assert again.status == 409

    async def settled() -> bool:  # invoices already started finish; none stays half-made
        return not await pool.fetchval(
            "SELECT count(*) FROM invoices WHERE period = $1 AND status IN ('draft', 'open')", CANCELLED)

    await wait_until(settled, seconds=60, what="started invoices to finish")
    await asyncio.sleep(2)
    invoiced = 0
    for account in accounts:
        ours = await pool.fetch("SELECT id, status, total_cents FROM invoices WHERE account_id = $1 AND period = $2",
                                account.id, CANCELLED)
        stripe_side = await stripe_invoices_for(stripe_api, account.customer, f"inv-{account.id}-{CANCELLED}")
        charges = await succeeded_charges(stripe_api, account.customer)
        if ours:
            [row] = ours
            assert row["status"] == "paid"
            assert [i["total"] for i in stripe_side] == [row["total_cents"]] and len(charges) == 1
            invoiced += 1
        else:
            assert stripe_side == [] and charges == []
    assert 1 <= invoiced < len(accounts), f"{invoiced} of {len(accounts)} invoiced: the cancel landed too late"


async def test_run_status_answers_quickly_without_a_worker(
        settings: Settings, operator_headers: dict[str, str], pool: asyncpg.Pool, temporal_client: Client,
        figures: Figures) -> None:
    """The API started the run, but no worker polls its task queue: the status comes from Postgres, at once."""
    await complete_hours(pool, FIRST)
    idle = settings.model_copy(update={"task_queue": "nobody-polls-this-queue"})
    async with harness.api_client(idle) as api:
        started = await api.post("/admin/billing/runs", headers=operator_headers, json={"period": NO_WORKER})
        assert started.status == 202, await started.text()
        try:
            began = time.monotonic()
            resp = await api.get(f"/admin/billing/runs/{NO_WORKER}", headers=operator_headers)
            elapsed = time.monotonic() - began
            body = await resp.json()
            assert resp.status == 200, body
            assert (body["status"], body["phase"], body["live"]) == ("running", "starting", False)
            assert body["updated_at"] is not None
            # Before, the answer waited on the query for ~30 s and then failed with a 409.
            assert elapsed < 1, f"{elapsed:.2f}s"
            figures.set("run status without a worker (s)", round(elapsed, 2))
        finally:
            await temporal_client.get_workflow_handle(billing_run_id(NO_WORKER)).terminate("test over")
        ended = await (await api.get(f"/admin/billing/runs/{NO_WORKER}", headers=operator_headers)).json()
        assert ended["status"] == "terminated"  # the server's word over the row the run could not update


async def test_invoices_without_a_run_do_not_make_a_run(api: TestClient, operator_headers: dict[str, str],
                                                        pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    account = await make_account(pool, stripe_api, plan="payg")
    await record_invoice(pool, account.id, ORPHAN)  # e.g. an invoice made for one account by the temporal CLI
    resp = await api.get(f"/admin/billing/runs/{ORPHAN}", headers=operator_headers)
    assert resp.status == 404, await resp.text()
