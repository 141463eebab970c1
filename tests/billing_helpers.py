"""Test data for billing: accounts with real Stripe customers on localstripe, ledger rows, collected hours."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import stripe

from tcloud.domain import apikeys
from tcloud.domain.billing_period import hours_in_period, period_bounds

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then every charge is declined
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class TestAccount:
    __test__ = False
    id: str
    customer: str


def new_account_id(prefix: str = "b") -> str:
    return prefix + secrets.token_hex(5)


async def set_card(stripe_api: stripe.StripeClient, customer: str, number: str) -> str:
    """Attach a card and make it the customer's default payment method."""
    pm = await stripe_api.v1.payment_methods.create_async(
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
    await stripe_api.v1.payment_methods.attach_async(pm.id, {"customer": customer})
    await stripe_api.v1.customers.update_async(customer, {"invoice_settings": {"default_payment_method": pm.id}})
    return str(pm.id)


async def make_account(pool: asyncpg.Pool, stripe_api: stripe.StripeClient, *, plan: str = "payg",
                       created_at: datetime = LONG_AGO, card: str | None = GOOD_CARD,
                       account_id: str | None = None) -> TestAccount:
    """An account row and its Stripe customer (metadata account_id), as account creation would make them."""
    account_id = account_id or new_account_id()
    customer = await stripe_api.v1.customers.create_async(
        {"email": f"{account_id}@example.com", "metadata": {"account_id": account_id}})
    if card:
        await set_card(stripe_api, customer.id, card)
    await pool.execute(
        """INSERT INTO accounts (id, name, email, plan, created_at, stripe_customer_id)
           VALUES ($1, $1, $2, $3, $4, $5)""", account_id, f"{account_id}@example.com", plan, created_at, customer.id)
    return TestAccount(account_id, str(customer.id))


async def add_usage(pool: asyncpg.Pool, account_id: str, period: str, *, actions: int = 0,
                    active_byte_hours: int = 0, retained_byte_hours: int = 0, namespaces: int = 2,
                    billable: bool = True) -> None:
    """Spread the usage over ``namespaces`` namespaces and several hours of the period, as metering would."""
    start, _ = period_bounds(period)
    rows = []
    for n in range(namespaces):
        ns = f"ns{n}.{account_id}"
        await pool.execute(
            """INSERT INTO namespace_ownership (namespace, account_id, valid_from) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING""", ns, account_id, LONG_AGO)
        hours = [start + timedelta(hours=h) for h in (0, 7, 100, hours_in_period(period) - 1)]
        for metric, total in (("actions", actions), ("active_storage", active_byte_hours),
                              ("retained_storage", retained_byte_hours)):
            share = _split(Decimal(total), namespaces, n)
            for i, hour in enumerate(hours):
                rows.append((ns, hour, metric, _split(share, len(hours), i), account_id, billable))
    await pool.executemany(
        """INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (namespace, hour, metric) DO UPDATE SET quantity = usage_ledger.quantity + EXCLUDED.quantity""",
        rows)


def _split(total: Decimal, parts: int, index: int) -> Decimal:
    """Integer shares of ``total`` that sum back to it exactly."""
    base = total // parts
    return base + (total - base * parts if index == parts - 1 else 0)


async def complete_hours(pool: asyncpg.Pool, period: str, *, skip_last_hours: int = 0) -> None:
    """Mark the period's hours collected by both collectors (but the last ``skip_last_hours``)."""
    start, _ = period_bounds(period)
    hours = [start + timedelta(hours=h) for h in range(hours_in_period(period) - skip_last_hours)]
    await pool.executemany(
        "INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(c, h) for c in ("actions", "storage") for h in hours])


async def stripe_invoices_for(stripe_api: stripe.StripeClient, customer: str, invoice_id: str) -> list[dict]:
    """The Stripe invoices of ``customer`` that carry our invoice's items."""
    listed = await stripe_api.v1.invoices.list_async({"customer": customer, "limit": 100})
    out = []
    for inv in listed.data:
        data = inv.to_dict()
        if any((line.get("metadata") or {}).get("tcloud_invoice") == invoice_id for line in data["lines"]["data"]):
            out.append(data)
    return out


async def succeeded_charges(stripe_api: stripe.StripeClient, customer: str) -> list[dict]:
    charges = await stripe_api.v1.charges.list_async({"customer": customer, "limit": 100})
    return [c.to_dict() for c in charges.data if c.status == "succeeded"]


async def customer_headers(pool: asyncpg.Pool, account_id: str) -> dict[str, str]:
    """A fresh API key of the account, as the Authorization header."""
    key = apikeys.new_key()
    await pool.execute("INSERT INTO api_keys (id, account_id, prefix, secret_hash) VALUES ($1, $2, $3, $4)",
                       "key-" + secrets.token_hex(6), account_id, key.prefix, key.secret_hash)
    return {"Authorization": f"Bearer {key.token}"}


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, seconds: float = 60, what: str = "condition") -> None:
    """Poll an async predicate with a generous deadline (no fixed sleeps in tests)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
