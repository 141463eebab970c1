"""Routes: the card on file. The portal adds a card the way Stripe intends: it asks for a SetupIntent of the
account's Stripe customer, collects and confirms the card with Stripe.js (the number goes from the browser to
Stripe only), then hands the SetupIntent's id back; the platform checks it with Stripe, makes its payment method the
customer's default for invoices, keeps brand, last 4 digits and expiry, and retries any past-due invoice on it.

A suspended account may add a card: that is how it pays and resumes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

import asyncpg
import stripe
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.appkeys import POOL, SETTINGS, STRIPE, TEMPORAL
from api.auth import require_billing
from api.bodies import parse
from api.errors import ApiError
from api.openapi import documented
from tcloud.store import accounts, invoices
from tcloud.store import payment_methods as store
from workflows.billing_invoice import InvoiceWorkflow, RetryRequest, invoice_workflow_id

log = logging.getLogger("tcloud.api.payment_methods")
routes = web.RouteTableDef()
TAGS = ("billing",)


class SetupOut(BaseModel):
    # camelCase: the names the portal's Stripe.js code reads.
    clientSecret: str
    publishableKey: str
    stripeJsUrl: str


class SetPaymentMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    setupIntentId: str = Field(pattern=r"^seti_[A-Za-z0-9_]{1,200}$")


class PaymentMethodOut(BaseModel):
    brand: str
    last4: str
    expMonth: int
    expYear: int
    updatedAt: datetime


class PaymentMethodSetOut(PaymentMethodOut):
    # The periods of the past-due invoices asked to retry their payment on the new card.
    retryingInvoices: list[str] = []


def _out(row: asyncpg.Record) -> PaymentMethodOut:
    return PaymentMethodOut(brand=row["brand"], last4=row["last4"], expMonth=row["exp_month"],
                            expYear=row["exp_year"], updatedAt=row["updated_at"])


def card_of(payment_method: dict[str, Any]) -> store.Card | None:
    """What is kept of a Stripe card payment method, or None when it is not a card."""
    card = payment_method.get("card")
    if payment_method.get("type") != "card" or not isinstance(card, dict):
        return None
    return store.Card(stripe_payment_method_id=str(payment_method["id"]), brand=str(card.get("brand") or "card"),
                      last4=str(card.get("last4") or ""), exp_month=int(card.get("exp_month") or 1),
                      exp_year=int(card.get("exp_year") or 0))


def _stripe_failed(err: stripe.StripeError, what: str) -> ApiError:
    if err.http_status == 404:
        return ApiError(404, f"no such {what}")
    log.warning("Stripe refused or failed (%s): %s", what, err.user_message or err)
    return ApiError(502, f"Stripe could not be reached or refused the request ({what}): try again")


async def _customer_id(request: web.Request, account_id: str) -> str:
    customer_id = await accounts.stripe_customer_of(request.app[POOL], account_id)
    if customer_id is None:
        raise ApiError(409, "the account's billing profile is still being created: try again in a moment")
    return customer_id


@routes.post("/cloud/billing/payment-method/setup")
@documented("Start adding a card: a Stripe SetupIntent of the account's customer, confirmed in the browser by "
            "Stripe.js (the card goes to Stripe only); allowed while suspended", auth="customer",
            response=SetupOut, tags=TAGS)
async def setup_payment_method(request: web.Request) -> web.Response:
    customer = await require_billing(request)  # no require_writable: a suspended account must be able to pay
    customer_id = await _customer_id(request, customer.account_id)
    settings = request.app[SETTINGS]
    try:
        # payment_method_types is still accepted by Stripe (and the only form localstripe knows), but this SDK's
        # typed parameters no longer list it.
        intent = await request.app[STRIPE].v1.setup_intents.create_async(cast(Any, {
            "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
            "metadata": {"account_id": customer.account_id}}))
    except stripe.StripeError as err:
        raise _stripe_failed(err, "Stripe customer") from err
    out = SetupOut(clientSecret=str(intent.client_secret), publishableKey=settings.stripe_publishable_key,
                   stripeJsUrl=settings.stripe_js)
    return web.json_response(out.model_dump(mode="json"))


@routes.post("/cloud/billing/payment-method")
@documented("Keep the card of a succeeded SetupIntent as the account's card on file (the default for its "
            "invoices) and retry its past-due invoices on it; allowed while suspended", auth="customer",
            request=SetPaymentMethod, response=PaymentMethodSetOut, tags=TAGS)
async def set_payment_method(request: web.Request) -> web.Response:
    customer = await require_billing(request)  # no require_writable: a suspended account must be able to pay
    body = await parse(request, SetPaymentMethod)
    client = request.app[STRIPE]
    customer_id = await _customer_id(request, customer.account_id)
    try:
        intent = (await client.v1.setup_intents.retrieve_async(body.setupIntentId)).to_dict()
    except stripe.StripeError as err:
        raise _stripe_failed(err, "SetupIntent") from err
    if intent.get("customer") != customer_id:  # another account's: answered as if absent
        raise ApiError(404, "no such SetupIntent")
    if intent.get("status") != "succeeded":
        raise ApiError(400, f"the SetupIntent has not succeeded (it is {intent.get('status')}): confirm the card "
                            "with Stripe first")
    pm_id = payment_method_of(intent)
    if pm_id is None:
        raise ApiError(400, "the SetupIntent has no payment method")
    row, retrying = await adopt_card(request.app, customer.account_id, customer_id, pm_id, source="portal")
    out = PaymentMethodSetOut(**_out(row).model_dump(), retryingInvoices=retrying)
    return web.json_response(out.model_dump(mode="json"))


def payment_method_of(intent: dict[str, Any]) -> str | None:
    """The id of a SetupIntent's payment method (expanded or not), or None."""
    pm = intent.get("payment_method")
    if isinstance(pm, dict):
        pm = pm.get("id")
    return str(pm) if pm else None


async def adopt_card(app: web.Application, account_id: str, customer_id: str, pm_id: str, *,
                     source: str) -> tuple[asyncpg.Record, list[str]]:
    """Make the payment method ``pm_id`` the customer's default for invoices (attached to it first if it is not
    yet), keep it as the account's card on file, and retry the account's past-due invoices. Safe to repeat.

    Returns:
        The card on file and the periods of the past-due invoices asked to retry.
    """
    client = app[STRIPE]
    try:
        pm = (await client.v1.payment_methods.retrieve_async(pm_id)).to_dict()
        if pm.get("customer") is None:  # Stripe attaches on confirmation; localstripe does not
            pm = (await client.v1.payment_methods.attach_async(pm_id, {"customer": customer_id})).to_dict()
        elif pm.get("customer") != customer_id:
            raise ApiError(404, "no such SetupIntent")
        card = card_of(pm)
        if card is None:
            raise ApiError(400, "the SetupIntent's payment method is not a card")
        await client.v1.customers.update_async(customer_id, {"invoice_settings": {"default_payment_method": pm_id}})
    except stripe.StripeError as err:
        raise _stripe_failed(err, "payment method") from err
    row = await store.record_payment_method(app[POOL], account_id, card, source=source)
    return row, await _retry_past_due(app, account_id)


async def _retry_past_due(app: web.Application, account_id: str) -> list[str]:
    """Signal ``retry_payment`` to the invoice workflow of each past-due invoice; the periods signalled."""
    signalled = []
    for period in await invoices.past_due_periods(app[POOL], account_id):
        handle: WorkflowHandle[InvoiceWorkflow, Any] = app[TEMPORAL].get_workflow_handle(
            invoice_workflow_id(account_id, period))
        try:
            await handle.signal(InvoiceWorkflow.retry_payment, RetryRequest("card added by the customer"))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.warning("past-due invoice %s/%s has no running workflow to retry it", account_id, period)
            continue
        signalled.append(period)
    return signalled


@routes.get("/cloud/billing/payment-method")
@documented("The account's card on file (brand, last 4 digits, expiry), 404 when there is none",
            auth="customer", response=PaymentMethodOut, tags=TAGS)
async def get_payment_method(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    row = await store.payment_method(request.app[POOL], customer.account_id)
    if row is None:
        raise ApiError(404, "no card on file")
    return web.json_response(_out(row).model_dump(mode="json"))
