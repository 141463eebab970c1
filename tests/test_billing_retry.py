"""The crash windows, one at a time, against localstripe: an earlier attempt created a Stripe object (item,
invoice, payment) and died before recording it. The next attempt must find it, not create it again."""

from __future__ import annotations

import asyncpg
import pytest
import stripe
from temporalio.exceptions import ApplicationError

from activities.billing import BillingActivities, InvoiceRef
from tcloud.services import invoicing
from tests.billing_helpers import add_usage, complete_hours, make_account, stripe_invoices_for, succeeded_charges

PERIOD = "2025-06"


async def _recorded(pool: asyncpg.Pool, stripe_api: stripe.StripeClient, actions: int) -> tuple[str, str, str]:
    account = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, account.id, PERIOD, actions=actions, active_byte_hours=50 * 10**9)
    await complete_hours(pool, PERIOD)
    invoice_id = await invoicing.record_invoice(pool, account.id, PERIOD)
    return account.id, account.customer, invoice_id


async def _lost_item(pool: asyncpg.Pool, stripe_api: stripe.StripeClient, account_id: str, customer: str,
                     invoice_id: str, line_no: int) -> str:
    """What a dead attempt leaves: the 'creating' marker, and the item in Stripe, unrecorded."""
    line = await pool.fetchrow("SELECT * FROM invoice_lines WHERE invoice_id = $1 AND line_no = $2", invoice_id,
                               line_no)
    await pool.execute("INSERT INTO stripe_objects (key, kind, account_id, state) VALUES ($1, 'invoice_item', $2, "
                       "'creating')", f"item:{invoice_id}:{line_no}", account_id)
    item = await stripe_api.v1.invoice_items.create_async({
        "customer": customer, "amount": int(line["amount_cents"]), "currency": "usd", "description": "lost",
        "metadata": {"tcloud_invoice": invoice_id, "tcloud_line": str(line_no)}})
    return str(item.id)


async def test_item_created_but_not_recorded_is_found(pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    account_id, customer, invoice_id = await _recorded(pool, stripe_api, 2_000_000)
    lost = await _lost_item(pool, stripe_api, account_id, customer, invoice_id, 1)
    acts = BillingActivities(pool=pool, stripe_client=stripe_api)
    sent = await acts.send_invoice(InvoiceRef(invoice_id))
    total = await pool.fetchval("SELECT total_cents FROM invoices WHERE id = $1", invoice_id)
    assert sent.stripe_total_cents == total == 10_000 + 210
    [inv] = await stripe_invoices_for(stripe_api, customer, invoice_id)
    item_ids = [line["invoice_item"] for line in inv["lines"]["data"] if line.get("metadata")]
    assert lost in item_ids and len(item_ids) == 2
    assert await pool.fetchval("SELECT stripe_invoice_item_id FROM invoice_lines WHERE invoice_id = $1 AND "
                               "line_no = 1", invoice_id) == lost


async def test_invoice_created_but_not_recorded_is_found(pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    account_id, customer, invoice_id = await _recorded(pool, stripe_api, 3_000_000)
    for line_no in (1, 2):
        await _lost_item(pool, stripe_api, account_id, customer, invoice_id, line_no)
    await pool.execute("INSERT INTO stripe_objects (key, kind, account_id, state) VALUES ($1, 'invoice', $2, "
                       "'creating')", f"invoice:{invoice_id}", account_id)
    lost = await stripe_api.v1.invoices.create_async({"customer": customer,
                                                      "pending_invoice_items_behavior": "include"})
    acts = BillingActivities(pool=pool, stripe_client=stripe_api)
    sent = await acts.send_invoice(InvoiceRef(invoice_id))
    assert sent.stripe_invoice_id == lost.id
    assert [i["id"] for i in await stripe_invoices_for(stripe_api, customer, invoice_id)] == [lost.id]
    # Sending again is a no-op.
    assert (await acts.send_invoice(InvoiceRef(invoice_id))).stripe_invoice_id == lost.id


async def test_payment_made_but_not_recorded_is_not_charged_again(pool: asyncpg.Pool,
                                                                  stripe_api: stripe.StripeClient) -> None:
    _, customer, invoice_id = await _recorded(pool, stripe_api, 1_000_000)
    acts = BillingActivities(pool=pool, stripe_client=stripe_api)
    sent = await acts.send_invoice(InvoiceRef(invoice_id))
    await stripe_api.v1.invoices.pay_async(sent.stripe_invoice_id)  # the dead attempt's payment
    result = await acts.collect_payment(InvoiceRef(invoice_id))
    assert result.paid and result.status == "paid"
    again = await acts.collect_payment(InvoiceRef(invoice_id))
    assert again.paid and again.attempts == result.attempts
    assert [c["amount"] for c in await succeeded_charges(stripe_api, customer)] == [5_000 + 210]


async def test_foreign_pending_items_are_never_swept_into_an_invoice(pool: asyncpg.Pool,
                                                                     stripe_api: stripe.StripeClient) -> None:
    _, customer, invoice_id = await _recorded(pool, stripe_api, 1_000_000)
    stray = await stripe_api.v1.invoice_items.create_async(
        {"customer": customer, "amount": 999, "currency": "usd", "metadata": {"tcloud_invoice": "inv-other"}})
    acts = BillingActivities(pool=pool, stripe_client=stripe_api)
    with pytest.raises(ApplicationError, match=stray.id):
        await acts.send_invoice(InvoiceRef(invoice_id))
    assert await stripe_invoices_for(stripe_api, customer, invoice_id) == []
    assert await succeeded_charges(stripe_api, customer) == []


async def test_one_stripe_invoice_per_period_and_no_subscription(pool: asyncpg.Pool,
                                                                 stripe_api: stripe.StripeClient) -> None:
    """No $0 subscription (Stripe would send its $0 invoice every month); one an earlier version made is
    cancelled, once, when the account's next invoice is sent."""
    account_id, customer, invoice_id = await _recorded(pool, stripe_api, 2_000_000)
    plan = await stripe_api.v1.plans.create_async({"amount": 0, "currency": "usd", "interval": "month",
                                                   "product": {"name": "legacy $0 plan"}})
    legacy = await stripe_api.v1.subscriptions.create_async({"customer": customer, "items": [{"plan": plan.id}]})
    await pool.execute("INSERT INTO stripe_objects (key, kind, account_id, state, stripe_id) "
                       "VALUES ($1, 'subscription', $2, 'created', $3)", f"subscription:{account_id}", account_id,
                       legacy.id)
    acts = BillingActivities(pool=pool, stripe_client=stripe_api)
    sent = await acts.send_invoice(InvoiceRef(invoice_id))
    assert (await stripe_api.v1.subscriptions.retrieve_async(legacy.id)).status == "canceled"
    [ours] = await stripe_invoices_for(stripe_api, customer, invoice_id)
    assert ours["id"] == sent.stripe_invoice_id and ours["subscription"] is None
    assert ours["metadata"]["tcloud_invoice"] == invoice_id
    assert sent.stripe_total_cents == ours["total"] == 10_000 + 210
    # The legacy subscription's own invoices aside, Stripe holds exactly this one invoice of ours.
    all_invoices = await stripe_api.v1.invoices.list_async({"customer": customer, "limit": 100})
    assert [i.id for i in all_invoices.data if i.subscription is None] == [sent.stripe_invoice_id]
