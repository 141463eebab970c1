"""Account activities: the account's Stripe customer, created exactly once.

localstripe honours no Idempotency-Key, so the guard is two-step: the attempt is recorded in Postgres before the
Stripe call, and a retry that finds an attempt recorded looks the customer up (metadata ``account_id``) before
creating another. Against real Stripe the idempotency key covers the same window as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud.store.accounts import record_stripe_customer, request_stripe_customer


@dataclass
class StripeCustomerInput:
    account_id: str


@dataclass
class StripeCustomerOutput:
    customer_id: str
    created: bool  # False when an existing customer was found and recorded


class AccountActivities:
    """Activities that touch an account's rows and its Stripe customer."""

    def __init__(self, *, pool: asyncpg.Pool, stripe_client: stripe.StripeClient):
        self._pool = pool
        self._stripe = stripe_client

    @activity.defn
    async def ensure_stripe_customer(self, params: StripeCustomerInput) -> StripeCustomerOutput:
        """Give the account a Stripe customer unless it has one; safe to run any number of times."""
        row = await request_stripe_customer(self._pool, params.account_id)
        if row is None:
            raise ApplicationError(f"account {params.account_id} does not exist", non_retryable=True)
        if row["stripe_customer_id"]:
            return StripeCustomerOutput(row["stripe_customer_id"], created=False)
        existing = await self._find_customer(params.account_id) if row["attempted_before"] else None
        if existing is not None:
            await record_stripe_customer(self._pool, params.account_id, existing)
            return StripeCustomerOutput(existing, created=False)
        customer = await self._stripe.v1.customers.create_async(
            {"name": row["name"], "email": row["email"], "metadata": {"account_id": params.account_id}},
            {"idempotency_key": f"tcloud-account-{params.account_id}"},
        )
        await record_stripe_customer(self._pool, params.account_id, customer.id)
        return StripeCustomerOutput(customer.id, created=True)

    async def _find_customer(self, account_id: str) -> str | None:
        """The oldest Stripe customer whose metadata names ``account_id`` (a list, not the lagging search API)."""
        found: list[tuple[int, str]] = []
        page = await self._stripe.v1.customers.list_async({"limit": 100})
        async for customer in page.auto_paging_iter():
            activity.heartbeat()
            metadata = customer.metadata.to_dict() if customer.metadata else {}
            if metadata.get("account_id") == account_id:
                found.append((customer.created, customer.id))
        return min(found)[1] if found else None
