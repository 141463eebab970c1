"""The card on file: ``payment_methods`` (one row per account, the Stripe payment method its invoices are charged
to, with what the portal shows of it). Also the lookups the card routes need: the account's Stripe customer,
the account behind a Stripe customer, and the account's past-due invoices to retry once a card is added."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from tcloud.store._connections import Conn, transaction
from tcloud.store.invoices import insert_billing_event


@dataclass(frozen=True)
class Card:
    """What is kept of a card: Stripe's id for it, brand, last 4 digits and expiry."""

    stripe_payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


_COLUMNS = "account_id, stripe_payment_method_id, brand, last4, exp_month, exp_year, updated_at"


async def payment_method(conn: Conn, account_id: str) -> asyncpg.Record | None:
    """The account's card on file (every column), or None."""
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM payment_methods WHERE account_id = $1", account_id)


async def record_payment_method(conn: Conn, account_id: str, card: Card, *, source: str) -> asyncpg.Record:
    """Make ``card`` the account's card on file (replacing any other) and log it as a billing event
    ('payment_method.set', with ``source``: the portal or a webhook), in one transaction. Idempotent."""
    async with transaction(conn) as tx:
        row = await tx.fetchrow(
            f"""INSERT INTO payment_methods (account_id, stripe_payment_method_id, brand, last4, exp_month, exp_year)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (account_id) DO UPDATE SET
                    stripe_payment_method_id = EXCLUDED.stripe_payment_method_id, brand = EXCLUDED.brand,
                    last4 = EXCLUDED.last4, exp_month = EXCLUDED.exp_month, exp_year = EXCLUDED.exp_year,
                    updated_at = now()
                RETURNING {_COLUMNS}""",
            account_id, card.stripe_payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year)
        await insert_billing_event(tx, account_id, "payment_method.set",
                                   detail={"payment_method": card.stripe_payment_method_id, "source": source})
        assert row is not None
        return row


async def forget_payment_method(conn: Conn, stripe_payment_method_id: str) -> list[str]:
    """Remove the card ``stripe_payment_method_id`` wherever it is on file (it was detached on Stripe's side) and
    log 'payment_method.detached' for each account; the accounts it was removed from. Idempotent."""
    async with transaction(conn) as tx:
        accounts = [r["account_id"] for r in await tx.fetch(
            "DELETE FROM payment_methods WHERE stripe_payment_method_id = $1 RETURNING account_id",
            stripe_payment_method_id)]
        for account_id in accounts:
            await insert_billing_event(tx, account_id, "payment_method.detached",
                                       detail={"payment_method": stripe_payment_method_id})
        return accounts
