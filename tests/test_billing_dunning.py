"""Payment failure and dunning against the real parts: a declined card, suspension (API writes refused),
payment through Stripe whose signed webhook reaches POST /webhooks/stripe and resumes the account, the
operator's retry and write-off signals (as `temporal workflow signal` sends them)."""

from __future__ import annotations

import json
import time

import aiohttp
import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests import harness
from tests.billing_helpers import (
    DECLINED_CARD,
    GOOD_CARD,
    add_usage,
    complete_hours,
    customer_headers,
    make_account,
    set_card,
    succeeded_charges,
    wait_until,
)
from workflows.billing_invoice import (
    ACCOUNT_KEY,
    PERIOD_KEY,
    DunningPolicy,
    InvoiceInput,
    InvoiceStatus,
    InvoiceWorkflow,
    RetryRequest,
    WriteOffRequest,
    invoice_workflow_id,
)

PERIOD = "2025-07"


@pytest.fixture(scope="module")
async def webhook_registered(api: TestClient, localstripe: harness.LocalStripe, settings: Settings) -> None:
    """localstripe signs and posts invoice events to this module's API."""
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{localstripe.url}/_config/webhooks/billing-dunning-{settings.task_queue}",
            json={"url": str(api.make_url("/webhooks/stripe")),
                  "secret": settings.stripe_webhook_secret.get_secret_value(),
                  "events": ["invoice.payment_succeeded", "invoice.payment_failed"]})
        assert resp.status == 200, await resp.text()


async def past_due(pool: asyncpg.Pool, stripe_api: stripe.StripeClient, client: Client, settings: Settings,
                   *, suspend_after_hours: int) -> tuple[str, str, WorkflowHandle]:
    account = await make_account(pool, stripe_api, plan="payg", card=DECLINED_CARD)
    await add_usage(pool, account.id, PERIOD, actions=2_000_000)
    await complete_hours(pool, PERIOD)
    handle = await client.start_workflow(
        InvoiceWorkflow.run,
        InvoiceInput(account.id, PERIOD, DunningPolicy(retry_after_hours=[10_000],
                                                       suspend_after_hours=suspend_after_hours)),
        id=invoice_workflow_id(account.id, PERIOD), task_queue=settings.task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(ACCOUNT_KEY, account.id),
                                                 SearchAttributePair(PERIOD_KEY, PERIOD)]))

    async def failed_once() -> bool:
        status: InvoiceStatus = await handle.query(InvoiceWorkflow.status)
        return status.state == "past_due" and (suspend_after_hours > 0 or status.suspended)

    await wait_until(failed_once, what="a failed payment")
    return account.id, account.customer, handle


async def test_declined_payment_suspends_then_webhook_payment_resumes(
        worker: None, webhook_registered: None, api: TestClient, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient, temporal_client: Client, settings: Settings) -> None:
    account_id, customer, handle = await past_due(pool, stripe_api, temporal_client, settings, suspend_after_hours=0)
    invoice_id = invoice_id_for(account_id, PERIOD)
    inv = await pool.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
    assert inv["status"] == "past_due" and inv["payment_attempts"] == 1
    assert "declined" in inv["last_payment_error"]
    account = await pool.fetchrow("SELECT status, status_reason FROM accounts WHERE id = $1", account_id)
    assert account["status"] == "suspended" and invoice_id in account["status_reason"]

    headers = await customer_headers(pool, account_id)
    refused = await api.put("/cloud/billing/alerts", json={"thresholds_cents": [1000]}, headers=headers)
    assert refused.status == 403 and "suspended" in (await refused.json())["message"]
    listed = await api.get("/cloud/billing/invoices", headers=headers)  # reads still work
    assert [i["status"] for i in (await listed.json())["invoices"]] == ["past_due"]

    # The customer fixes the card and pays on Stripe's side; the signed webhook tells the workflow.
    await set_card(stripe_api, customer, GOOD_CARD)
    await stripe_api.v1.invoices.pay_async(inv["stripe_invoice_id"])
    result = await handle.result()
    assert result.state == "paid" and not result.suspended
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "active"
    assert await pool.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "paid"
    assert await pool.fetchval("SELECT count(*) FROM billing_events WHERE invoice_id = $1 AND kind = "
                               "'webhook.invoice.payment_succeeded'", invoice_id) >= 1
    assert [c["amount"] for c in await succeeded_charges(stripe_api, customer)] == [10_000]
    ok = await api.put("/cloud/billing/alerts", json={"thresholds_cents": [1000]}, headers=headers)
    assert ok.status == 200


async def test_operator_retry_signal_collects(worker: None, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
                                              temporal_client: Client, settings: Settings) -> None:
    account_id, customer, handle = await past_due(pool, stripe_api, temporal_client, settings,
                                                  suspend_after_hours=10_000)
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "active"
    await set_card(stripe_api, customer, GOOD_CARD)
    await handle.signal(InvoiceWorkflow.retry_payment, RetryRequest("card updated"))
    result = await handle.result()
    assert result.state == "paid" and result.payment_attempts == 2
    assert [c["amount"] for c in await succeeded_charges(stripe_api, customer)] == [10_000]


async def test_operator_write_off_lifts_suspension(worker: None, pool: asyncpg.Pool,
                                                   stripe_api: stripe.StripeClient, temporal_client: Client,
                                                   settings: Settings) -> None:
    account_id, customer, handle = await past_due(pool, stripe_api, temporal_client, settings, suspend_after_hours=0)
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "suspended"
    await handle.signal("write_off", WriteOffRequest("goodwill"))
    result = await handle.result()
    assert result.state == "written_off"
    inv = await pool.fetchrow("SELECT status, written_off_reason FROM invoices WHERE id = $1",
                              invoice_id_for(account_id, PERIOD))
    assert (inv["status"], inv["written_off_reason"]) == ("written_off", "goodwill")
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "active"
    assert await succeeded_charges(stripe_api, customer) == []


@pytest.mark.parametrize(("headers", "body", "message"), [
    ({}, b"{}", "missing Stripe-Signature"),
    ({"Stripe-Signature": f"t={int(time.time())},v1=00"}, b'{"type": "invoice.paid"}', "does not verify"),
])
async def test_webhook_refuses_unsigned_or_forged_events(api: TestClient, headers: dict[str, str], body: bytes,
                                                         message: str) -> None:
    resp = await api.post("/webhooks/stripe", data=body, headers={"Content-Type": "application/json", **headers})
    assert resp.status == 400
    assert message in (await resp.json())["message"]


async def test_webhook_ignores_events_about_other_invoices(api: TestClient, settings: Settings) -> None:
    payload = json.dumps({"id": "evt_x", "object": "event", "type": "invoice.payment_succeeded",
                          "data": {"object": {"id": "in_not_ours", "object": "invoice"}}})
    header = stripe.WebhookSignature  # the library signs exactly as Stripe does
    ts = int(time.time())
    sig = header._compute_signature(f"{ts}.{payload}", settings.stripe_webhook_secret.get_secret_value())
    resp = await api.post("/webhooks/stripe", data=payload,
                          headers={"Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={sig}"})
    assert resp.status == 200 and await resp.json() == {"received": True, "handled": False}


async def test_account_without_stripe_customer_fails_visibly_and_can_run_again(
        worker: None, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, temporal_client: Client,
        settings: Settings) -> None:
    account = await make_account(pool, stripe_api, plan="payg")
    await pool.execute("UPDATE accounts SET stripe_customer_id = NULL WHERE id = $1", account.id)
    await add_usage(pool, account.id, PERIOD, actions=1_000_000)
    await complete_hours(pool, PERIOD)
    workflow_id = invoice_workflow_id(account.id, PERIOD)
    handle = await temporal_client.start_workflow(InvoiceWorkflow.run, InvoiceInput(account.id, PERIOD),
                                                  id=workflow_id, task_queue=settings.task_queue)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.query(InvoiceWorkflow.status)).state == "failed"
    assert await pool.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id_for(account.id, PERIOD)) \
        == "draft"
    # Fixed by the operator: the same id may run again because the earlier run failed.
    await pool.execute("UPDATE accounts SET stripe_customer_id = $2 WHERE id = $1", account.id, account.customer)
    again = await temporal_client.start_workflow(
        InvoiceWorkflow.run, InvoiceInput(account.id, PERIOD), id=workflow_id, task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
    assert (await again.result()).state == "paid"
    assert [c["amount"] for c in await succeeded_charges(stripe_api, account.customer)] == [5_000]
