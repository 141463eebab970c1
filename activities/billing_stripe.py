"""Putting a recorded invoice into Stripe and collecting it, safely repeatable without idempotency keys.

Every Stripe object is recorded in ``stripe_objects`` right after it is created. Before creating one, a
'creating' marker is written; finding that marker on a later attempt means an earlier attempt may have
created the object and died before recording it, so Stripe is searched (by the metadata every object
carries) before anything is created again. A per-invoice advisory lock keeps two attempts from overlapping.

Stripe shape used: pending invoice items with integer ``amount`` in cents, then a one-off invoice of the
customer's pending items (``pending_invoice_items_behavior=include``, no subscription), paid with the customer's
default payment method. One Stripe invoice per account-period and nothing else: a subscription, which earlier
versions grouped items under, would also send a $0 invoice every month (those are cancelled on the next invoice).
The local Stripe fake is taught this call (``launcher/stripe_fake.py``); localstripe itself only invoices through
subscriptions.
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

    async def cancel_legacy_subscription(self, account_id: str) -> None:
        """Cancel the $0 subscription earlier versions grouped invoices under (Stripe would send a $0 invoice
        every month for it), once; accounts that never had one cost nothing here but one lookup."""
        legacy = await store.stripe_object(self._conn, f"subscription:{account_id}")
        if legacy is None or legacy["stripe_id"] is None:
            return
        subscription = str(legacy["stripe_id"])

        async def find() -> str | None:
            sub = await self._stripe.v1.subscriptions.retrieve_async(subscription)
            return subscription if sub.status == "canceled" else None

        async def create() -> str:
            try:
                await self._stripe.v1.subscriptions.cancel_async(subscription)
            except stripe.InvalidRequestError:  # cancelled already (e.g. in Stripe's dashboard)
                if await find() is None:
                    raise
            return subscription

        await self._ensure(f"subscription-cancelled:{account_id}", "subscription_cancellation", account_id,
                           find, create)

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
            await self.cancel_legacy_subscription(inv["account_id"])
            lines = await store.billable_lines(self._conn, self._invoice_id)
            ours = {await self.ensure_item(inv["account_id"], customer, line, inv["period"]) for line in lines}
            await self.refuse_foreign_pending(customer, ours)
            await store.mark_stripe_object_creating(self._conn, key, "invoice", inv["account_id"])
            stripe_inv = await self._stripe.v1.invoices.create_async({
                "customer": customer, "pending_invoice_items_behavior": "include",
                "description": f"tcloud usage {inv['period']} ({self._invoice_id})",
                "metadata": {"tcloud_invoice": self._invoice_id, "tcloud_account": inv["account_id"],
                             "tcloud_period": inv["period"]}})
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
