"""Routes: webhooks. ``POST /webhooks/stripe`` verifies Stripe's signature with TCLOUD_STRIPE_WEBHOOK_SECRET
and signals the invoice's workflow; the workflow re-reads the invoice from Stripe before believing it."""

from __future__ import annotations

from typing import Any

import stripe
from aiohttp import web
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.appkeys import POOL, SETTINGS, STRIPE, TEMPORAL
from api.errors import ApiError
from api.openapi import documented
from tcloud.store import invoices as store
from workflows.billing_invoice import InvoiceWorkflow, PaymentNotice, invoice_workflow_id

routes = web.RouteTableDef()
MAX_PAYLOAD = 64 * 1024
SIGNALS = {"invoice.payment_succeeded": "payment_succeeded", "invoice.paid": "payment_succeeded",
           "invoice.payment_failed": "payment_failed"}
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
