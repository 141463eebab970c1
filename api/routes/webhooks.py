"""Routes: webhooks. ``POST /webhooks/stripe`` verifies Stripe's signature with TCLOUD_STRIPE_WEBHOOK_SECRET
and signals the invoice's workflow; the workflow re-reads the invoice from Stripe before believing it.
``setup_intent.succeeded`` and ``payment_method.detached`` keep the card on file in step with Stripe (a card
confirmed in the browser whose tab closed before the portal handed it back; a card removed on Stripe's side)."""

from __future__ import annotations

from typing import Any

import stripe
from aiohttp import web
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.appkeys import POOL, SETTINGS, STRIPE, TEMPORAL
from api.errors import ApiError
from api.openapi import documented
from api.routes.payment_methods import adopt_card, payment_method_of
from tcloud.store import accounts
from tcloud.store import invoices as store
from tcloud.store import payment_methods as cards
from workflows.billing_invoice import InvoiceWorkflow, PaymentNotice, invoice_workflow_id

routes = web.RouteTableDef()
MAX_PAYLOAD = 64 * 1024
SIGNALS = {"invoice.payment_succeeded": "payment_succeeded", "invoice.paid": "payment_succeeded",
           "invoice.payment_failed": "payment_failed"}
CARD_EVENTS = ("setup_intent.succeeded", "payment_method.detached")
RECEIVED = {"type": "object", "properties": {"received": {"type": "boolean"}, "handled": {"type": "boolean"}}}


@routes.post("/webhooks/stripe")
@documented("Stripe events about invoices (Stripe-Signature verified)", auth="signature", response=RECEIVED,
            tags=("webhooks",))
async def stripe_webhook(request: web.Request) -> web.Response:
    payload = await request.read()
    signature = request.headers.get("Stripe-Signature")
    if not signature:
        raise ApiError(400, "missing Stripe-Signature header")
    if len(payload) > MAX_PAYLOAD:
        raise ApiError(413, "payload too large")
    secret = request.app[SETTINGS].stripe_webhook_secret.get_secret_value()
    try:
        event = request.app[STRIPE].construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as err:
        raise ApiError(400, "Stripe-Signature does not verify") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "payload is not a JSON Stripe event") from err
    data = event.to_dict()
    if data.get("type") in CARD_EVENTS:
        handled = await _card_event(request, str(data["type"]), (data.get("data") or {}).get("object") or {})
        return web.json_response({"received": True, "handled": handled})
    signal = SIGNALS.get(str(data.get("type")))
    obj = (data.get("data") or {}).get("object") or {}
    stripe_invoice_id = obj.get("id") if isinstance(obj, dict) else None
    if not signal or not stripe_invoice_id:
        return web.json_response({"received": True, "handled": False})
    pool = request.app[POOL]
    row = await store.invoice_by_stripe_id(pool, stripe_invoice_id)
    if row is None:  # not one of ours (e.g. a subscription's $0 invoice)
        return web.json_response({"received": True, "handled": False})
    await store.insert_billing_event(pool, row["account_id"], f"webhook.{data['type']}", invoice_id=row["id"],
                                     detail={"event": data.get("id")})
    handle: WorkflowHandle[InvoiceWorkflow, Any] = request.app[TEMPORAL].get_workflow_handle(
        invoice_workflow_id(row["account_id"], row["period"]))
    notice = PaymentNotice(event=str(data["type"]), stripe_invoice_id=str(stripe_invoice_id))
    try:
        if signal == "payment_succeeded":
            await handle.signal(InvoiceWorkflow.payment_succeeded, notice)
        else:
            await handle.signal(InvoiceWorkflow.payment_failed, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return web.json_response({"received": True, "handled": False})  # the invoice workflow has finished
    return web.json_response({"received": True, "handled": True})


async def _card_event(request: web.Request, kind: str, obj: Any) -> bool:
    """Keep ``payment_methods`` in step with a card event; whether it concerned one of our accounts."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return False
    pool = request.app[POOL]
    if kind == "payment_method.detached":
        return bool(await cards.forget_payment_method(pool, obj["id"]))
    customer_id, pm_id = obj.get("customer"), payment_method_of(obj)
    if obj.get("status") != "succeeded" or not isinstance(customer_id, str) or pm_id is None:
        return False
    account_id = await accounts.account_of_stripe_customer(pool, customer_id)
    if account_id is None:
        return False
    on_file = await cards.payment_method(pool, account_id)
    created = obj.get("created")
    if (on_file is not None and on_file["stripe_payment_method_id"] != pm_id and isinstance(created, int)
            and on_file["updated_at"].timestamp() > created):
        return False  # a late event about a card replaced since
    try:
        await adopt_card(request.app, account_id, customer_id, pm_id, source="webhook")
    except ApiError as err:
        if err.status >= 500:
            raise  # Stripe will deliver the event again
        return False
    return True
