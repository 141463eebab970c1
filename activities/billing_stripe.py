"""Putting a recorded invoice into Stripe and collecting it, safely repeatable without idempotency keys.

Every Stripe object is recorded in ``stripe_objects`` right after it is created. Before creating one, a
'creating' marker is written; finding that marker on a later attempt means an earlier attempt may have
created the object and died before recording it, so Stripe is searched (by the metadata every object
carries) before anything is created again. A per-invoice advisory lock keeps two attempts from overlapping.

Stripe shape used (works on localstripe and on Stripe): one $0 monthly plan, one subscription per customer,
pending invoice items with integer ``amount`` in cents, then an invoice for customer + subscription, paid with
the customer's default payment method. The subscription is made before any item: a new subscription's first
invoice takes every pending item of the customer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud.store import invoices as store

ZERO_PLAN_ID = "tcloud-usage-monthly-0"


@dataclass
class StripeInvoiceState:
    """What Stripe holds for one of our invoices."""

    stripe_invoice_id: str
    status: str
    total_cents: int
    hosted_invoice_url: str | None


def _heartbeat() -> None:
    if activity.in_activity():
        activity.heartbeat()


class InvoiceLocked(Exception):
    """Another attempt is working on this invoice right now; retry later."""


class StripeSync:
    """The Stripe side of one invoice, over a connection that holds the invoice's advisory lock."""

    def __init__(self, conn: asyncpg.Connection, client: stripe.StripeClient, invoice_id: str):
        self._conn = conn
        self._stripe = client
        self._invoice_id = invoice_id

    async def lock(self) -> None:
        if not await store.try_lock_invoice(self._conn, self._invoice_id):
            raise InvoiceLocked(self._invoice_id)

    async def unlock(self) -> None:
        await store.unlock_invoice(self._conn, self._invoice_id)

    async def _ensure(self, key: str, kind: str, account_id: str | None,
                      find: Callable[[], Awaitable[str | None]], create: Callable[[], Awaitable[str]]) -> str:
        """The Stripe id recorded for ``key``; else found in Stripe after an unfinished attempt; else created."""
        row = await store.stripe_object(self._conn, key)
        if row is not None and row["stripe_id"] is not None:
            return str(row["stripe_id"])
        found = await find() if row is not None else None
        if found is None:
            await store.mark_stripe_object_creating(self._conn, key, kind, account_id)
            found = await create()
            _heartbeat()
        await self._record(key, kind, account_id, found)
        return found

    async def _record(self, key: str, kind: str, account_id: str | None, stripe_id: str) -> None:
        await store.record_stripe_object(self._conn, key, kind, account_id, stripe_id)

    async def ensure_plan(self) -> str:
        async def find() -> str | None:
            try:
                return str((await self._stripe.v1.plans.retrieve_async(ZERO_PLAN_ID)).id)
            except stripe.InvalidRequestError as err:
                if err.http_status == 404:
                    return None
                raise

        async def create() -> str:
            found = await find()
            if found:
                return found
            try:
                plan = await self._stripe.v1.plans.create_async({
                    "id": ZERO_PLAN_ID, "amount": 0, "currency": "usd", "interval": "month",
                    "product": {"name": "tcloud usage (invoiced monthly in arrears)"},
                })
            except stripe.StripeError as err:  # created meanwhile by a concurrent first invoice
                if err.http_status in (400, 409) and (found := await find()):
                    return found
                raise
            return str(plan.id)

        return await self._ensure("plan:zero", "plan", None, find, create)

    async def ensure_subscription(self, account_id: str, customer: str) -> str:
        plan = await self.ensure_plan()

        async def find() -> str | None:
            subs = await self._stripe.v1.subscriptions.list_async({"customer": customer, "limit": 100})
            for sub in subs.data:
                if _meta(sub).get("tcloud_account") == account_id:
                    return str(sub.id)
            return None

        async def create() -> str:
            await self.refuse_foreign_pending(customer, set())
            sub = await self._stripe.v1.subscriptions.create_async({
                "customer": customer, "items": [{"plan": plan}], "metadata": {"tcloud_account": account_id}})
            return str(sub.id)

        return await self._ensure(f"subscription:{account_id}", "subscription", account_id, find, create)

    async def refuse_foreign_pending(self, customer: str, ours: set[str]) -> None:
        """Raise when the customer has pending items that are not ``ours``: the next invoice (or a new
        subscription's first invoice) would sweep them in, and we never mix another invoice's items into ours."""
        pending = await self._stripe.v1.invoice_items.list_async({"customer": customer, "limit": 100})
        foreign = {str(i.id) for i in pending.data} - ours
        if foreign:
            raise ApplicationError(f"customer {customer} has pending invoice items of another invoice: "
                                   f"{sorted(foreign)}")

    async def find_invoice(self, customer: str) -> Any | None:
        """The Stripe invoice holding this invoice's items, found through the items' metadata on its lines."""
        invoices = await self._stripe.v1.invoices.list_async({"customer": customer, "limit": 100})
        for inv in invoices.data:
            if any(_meta(line).get("tcloud_invoice") == self._invoice_id for line in inv.lines.data):
                return inv
        return None

    async def ensure_item(self, account_id: str, customer: str, line: asyncpg.Record, period: str) -> str:
        meta = {"tcloud_invoice": self._invoice_id, "tcloud_line": str(line["line_no"]),
                "tcloud_account": account_id, "tcloud_period": period}

        async def find() -> str | None:
            pending = await self._stripe.v1.invoice_items.list_async({"customer": customer, "limit": 100})
            for item in pending.data:
                m = _meta(item)
                if m.get("tcloud_invoice") == self._invoice_id and m.get("tcloud_line") == meta["tcloud_line"]:
                    return str(item.id)
            return None

        async def create() -> str:
            item = await self._stripe.v1.invoice_items.create_async({
                "customer": customer, "amount": int(line["amount_cents"]), "currency": "usd",
                "description": f"{period} {line['description']}", "metadata": meta})
            return str(item.id)

        item_id = await self._ensure(f"item:{self._invoice_id}:{line['line_no']}", "invoice_item", account_id,
                                     find, create)
        await store.set_line_stripe_item(self._conn, self._invoice_id, line["line_no"], item_id)
        return item_id

    async def send(self) -> StripeInvoiceState:
        """Create (or find) the Stripe invoice with one item per non-zero line; record it as 'open'."""
        inv = await store.invoice_to_send(self._conn, self._invoice_id)
        if inv is None:
            raise ApplicationError(f"invoice {self._invoice_id} is not recorded", non_retryable=True)
        customer = inv["stripe_customer_id"]
        if not customer:
            raise ApplicationError(f"account {inv['account_id']} has no Stripe customer", non_retryable=True)
        if inv["stripe_invoice_id"]:
            return await self.state(inv["stripe_invoice_id"])
        key = f"invoice:{self._invoice_id}"
        marker = await store.stripe_object(self._conn, key)
        stripe_inv = await self.find_invoice(customer) if marker is not None else None
        if stripe_inv is None:
            subscription = await self.ensure_subscription(inv["account_id"], customer)
            lines = await store.billable_lines(self._conn, self._invoice_id)
            ours = {await self.ensure_item(inv["account_id"], customer, line, inv["period"]) for line in lines}
            await self.refuse_foreign_pending(customer, ours)
            await store.mark_stripe_object_creating(self._conn, key, "invoice", inv["account_id"])
            stripe_inv = await self._stripe.v1.invoices.create_async({
                "customer": customer, "subscription": subscription,
                "description": f"tcloud usage {inv['period']} ({self._invoice_id})"})
            _heartbeat()
        await self._record(key, "invoice", inv["account_id"], str(stripe_inv.id))
        state = _state_of(stripe_inv)
        if state.total_cents != inv["total_cents"]:
            raise ApplicationError(f"Stripe invoice {state.stripe_invoice_id} totals {state.total_cents} cents, "
                                   f"ours {inv['total_cents']}", non_retryable=True)
        await store.mark_invoice_sent(self._conn, self._invoice_id, state.stripe_invoice_id, state.hosted_invoice_url)
        return state

    async def state(self, stripe_invoice_id: str) -> StripeInvoiceState:
        return _state_of(await self._stripe.v1.invoices.retrieve_async(stripe_invoice_id))

    async def pay(self, stripe_invoice_id: str) -> tuple[StripeInvoiceState, str | None]:
        """Pay unless already paid. Returns the state after the attempt and the decline message, if any."""
        current = await self.state(stripe_invoice_id)
        if current.status == "paid":
            return current, None
        try:
            paid = await self._stripe.v1.invoices.pay_async(stripe_invoice_id)
        except (stripe.CardError, stripe.InvalidRequestError) as err:
            return await self.state(stripe_invoice_id), err.user_message or str(err)
        state = _state_of(paid)
        if state.status == "paid":
            return state, None
        charge = paid.to_dict().get("charge")
        reason = charge.get("failure_message") if isinstance(charge, dict) else None
        return state, reason or "payment failed"


def _meta(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict (empty when it has none)."""
    return dict(obj.to_dict().get("metadata") or {})


def _state_of(inv: Any) -> StripeInvoiceState:
    data = inv.to_dict()
    return StripeInvoiceState(str(data["id"]), str(data["status"]), int(data["total"]),
                              data.get("hosted_invoice_url"))


def event_detail(**kwargs: object) -> str:
    return json.dumps(kwargs, default=str)
