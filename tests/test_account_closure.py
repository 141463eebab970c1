"""Closing an account, on the real worker, Temporal server, Postgres and Stripe fake: nothing new is created while
it closes; within the grace it can be reopened as if never closed; after the grace its namespaces are deleted
from the server and exactly one final invoice bills its usage up to the closure, charged to its card; later
billing runs skip it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from temporalio.client import Client, WorkflowExecutionStatus

from activities.billing import AccountPageInput, BillingActivities
from tcloud.domain.billing_period import hour_ceiling, period_bounds, period_of
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, describe_on_server, unique
from tests.billing_helpers import (
    add_usage,
    complete_hours,
    make_account,
    set_card,
    stripe_invoices_for,
    succeeded_charges,
    wait_until,
)
from workflows.account_closure import AccountClosureStatus, AccountClosureWorkflow, account_closure_workflow_id
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

GRACE_SECONDS = 12
GOOD_CARD = "4242424242424242"
PAST = "2025-08"  # for the account closed in the middle of a past month
AFTER = "2025-09"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"account_closure_grace_seconds": GRACE_SECONDS})


async def _account_with_card(api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                             stripe_api: stripe.StripeClient) -> TestAccount:
    account = await create_account(api, operator_headers, prefix="close", plan="payg")

    async def has_customer() -> bool:
        return bool(await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account.id))

    await wait_until(has_customer, seconds=60, what="the Stripe customer")
    customer = await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account.id)
    await set_card(stripe_api, customer, GOOD_CARD)
    return account


async def _ledger(pool: asyncpg.Pool, account_id: str, namespace: str, hour: datetime, actions: int) -> None:
    await pool.execute(
        """INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
           VALUES ($1, $2, 'actions', $3, $4, true)""", namespace, hour, Decimal(actions), account_id)


async def _mark_collected_until(pool: asyncpg.Pool, until: datetime) -> None:
    """Both collectors collected every hour from the start of the month before ``until`` up to ``until``."""
    start = period_bounds(period_of(until))[0] - timedelta(days=40)
    hours = []
    hour = start
    while hour < until:
        hours.append(hour)
        hour += timedelta(hours=1)
    await pool.executemany(
        "INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(c, h) for c in ("actions", "storage") for h in hours])


async def _closure_result(temporal_client: Client, account_id: str) -> AccountClosureStatus:
    handle = temporal_client.get_workflow_handle_for(AccountClosureWorkflow.run,
                                                     account_closure_workflow_id(account_id))
    return await asyncio.wait_for(handle.result(), timeout=GRACE_SECONDS + 120)


async def test_a_closed_account_is_invoiced_once_up_to_its_closure_and_its_namespaces_are_deleted(
        api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        worker: None, settings: Settings, temporal_client: Client) -> None:
    account = await _account_with_card(api, operator_headers, pool, stripe_api)
    ns, _ = await create_namespace(api, account, unique("orders-"))
    assert describe_on_server(settings.temporal_address, ns) is not None
    now = datetime.now(UTC)
    before = max(period_bounds(period_of(now))[0], now.replace(minute=0, second=0, microsecond=0)
                 - timedelta(hours=1))
    await _ledger(pool, account.id, ns, before, 3_000_000)  # billed: before the closure
    await _ledger(pool, account.id, ns, hour_ceiling(now) + timedelta(hours=2), 5_000_000)  # after: never billed
    await _mark_collected_until(pool, hour_ceiling(now) + timedelta(hours=1))

    wrong = await api.post("/cloud/account/close", headers=account.headers, json={"confirm": "someoneelse"})
    assert wrong.status == 400 and account.id in (await wrong.json())["message"]
    closing = await api.post("/cloud/account/close", headers=account.headers, json={"confirm": account.id})
    body = await closing.json()
    assert closing.status == 202, body
    assert body["account"]["status"] == "closing" and body["account"]["reopenableUntil"]
    assert (await api.post("/cloud/account/close", headers=account.headers,
                           json={"confirm": account.id})).status == 409

    # While closing: nothing new, no data-plane token, reads still work.
    refused = await api.post("/cloud/namespaces", headers=account.headers,
                             json={"spec": {"name": unique("more-"), "retentionDays": 3}})
    assert refused.status == 403 and "closing" in (await refused.json())["message"]
    assert (await api.post(f"/cloud/namespaces/{ns}/token", headers=account.headers)).status == 403
    assert (await api.get("/cloud/billing/invoices", headers=account.headers)).status == 200

    result = await _closure_result(temporal_client, account.id)
    period = period_of(result.closed_at or now)
    assert result.phase == "invoiced" and result.namespaces_deleted == [ns], result
    assert result.final_invoice_workflow_id == f"billing/{account.id}/{period}"

    account_row = await pool.fetchrow("SELECT status, closed_at FROM accounts WHERE id = $1", account.id)
    assert account_row["status"] == "closed"
    assert describe_on_server(settings.temporal_address, ns) is None
    assert await pool.fetchval("SELECT state FROM namespaces WHERE namespace = $1", ns) == "deleted"

    invoice_id = invoice_id_for(account.id, period)

    async def paid() -> bool:
        return await pool.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "paid"

    await wait_until(paid, seconds=90, what="the final invoice to be paid")
    invoices = await pool.fetch("SELECT * FROM invoices WHERE account_id = $1", account.id)
    assert len(invoices) == 1
    [invoice] = invoices
    assert invoice["period_end"] == hour_ceiling(account_row["closed_at"])
    assert invoice["total_cents"] == 15_000  # payg: 3M actions at $50 per million; the 5M after closure unbilled
    customer = await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account.id)
    assert [i["total"] for i in await stripe_invoices_for(stripe_api, customer, invoice_id)] == [15_000]
    assert len(await succeeded_charges(stripe_api, customer)) == 1
    assert (await stripe_api.v1.customers.retrieve_async(customer)).id == customer  # kept for the record

    listed = await api.get(f"/cloud/billing/invoices/{invoice_id}", headers=account.headers)
    assert (await listed.json())["covers_to"].startswith(invoice["period_end"].isoformat()[:19])
    late = await api.post("/cloud/account/reopen", headers=account.headers)
    assert late.status == 409
    # The month's own run, later, finds the final invoice already made; the next month has no such account.
    activities = BillingActivities(pool=pool, stripe_client=stripe_api)
    _, end = period_bounds(period)
    assert account.id in (await activities.list_accounts(AccountPageInput(period, "", 10_000))).account_ids
    assert account.id not in (await activities.list_accounts(AccountPageInput(period_of(end), "", 10_000))
                              ).account_ids


async def test_reopening_within_the_grace_keeps_everything(
        api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        worker: None, settings: Settings, temporal_client: Client) -> None:
    account = await _account_with_card(api, operator_headers, pool, stripe_api)
    ns, _ = await create_namespace(api, account, unique("keep-"))
    closing = await api.post(f"/admin/accounts/{account.id}/close", headers=operator_headers,
                             json={"reason": "asked by email"})
    assert closing.status == 202, await closing.text()
    reopened = await api.post("/cloud/account/reopen", headers=account.headers)
    body = await reopened.json()
    assert reopened.status == 200, body
    assert (body["status"], body["closedAt"], body["reopenableUntil"]) == ("active", None, None)
    result = await _closure_result(temporal_client, account.id)
    assert result.phase == "reopened" and result.namespaces_deleted == []
    assert describe_on_server(settings.temporal_address, ns) is not None
    assert (await api.post(f"/cloud/namespaces/{ns}/token", headers=account.headers)).status == 200
    assert await pool.fetchval("SELECT count(*) FROM invoices WHERE account_id = $1", account.id) == 0
    assert (await api.post("/cloud/account/reopen", headers=account.headers)).status == 409


async def test_billing_runs_bill_a_closed_account_up_to_its_closure_and_never_after(
        pool: asyncpg.Pool, stripe_api: stripe.StripeClient, worker: None, settings: Settings,
        temporal_client: Client) -> None:
    """Closed on the 16th of PAST (before this platform kept closures as such): PAST bills its first half, with
    the plan's minimum for 16 of 31 days; AFTER skips it."""
    closed = await make_account(pool, stripe_api, plan="essentials")
    still_open = await make_account(pool, stripe_api, plan="payg")
    closed_at = period_bounds(PAST)[0] + timedelta(days=15, hours=9, minutes=30)
    for account in (closed, still_open):
        await add_usage(pool, account.id, PAST, actions=1_000_000)  # at hours 0, 7, 100 and the month's last
        await add_usage(pool, account.id, AFTER, actions=1_000_000)
    await pool.execute("UPDATE accounts SET status = 'closed', closed_at = $2 WHERE id = $1", closed.id, closed_at)
    await complete_hours(pool, PAST)
    await complete_hours(pool, AFTER)
    for period in (PAST, AFTER):
        result = await asyncio.wait_for(temporal_client.execute_workflow(
            BillingRunWorkflow.run, BillingRunInput(period=period, grace_hours=0, max_concurrent=4),
            id=billing_run_id(period), task_queue=settings.task_queue), timeout=120)
        assert result.phase == "done"
    rows = {r["period"]: r for r in await pool.fetch("SELECT * FROM invoices WHERE account_id = $1", closed.id)}
    assert set(rows) == {PAST}
    assert rows[PAST]["period_end"] == hour_ceiling(closed_at) and rows[PAST]["days_billed"] == 16
    lines = {r["kind"]: r for r in await pool.fetch("SELECT * FROM invoice_lines WHERE invoice_id = $1",
                                                    rows[PAST]["id"])}
    assert lines["actions"]["quantity"] == 750_000  # 3 of the 4 hours with usage were before the closure
    assert await pool.fetchval("SELECT count(*) FROM invoices WHERE account_id = $1", still_open.id) == 2
    status = await pool.fetchrow("SELECT status, counts FROM billing_runs WHERE period = $1", AFTER)
    assert status["status"] == "completed"
    assert (await temporal_client.get_workflow_handle(billing_run_id(AFTER)).describe()).status == \
        WorkflowExecutionStatus.COMPLETED
