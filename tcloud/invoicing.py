"""From the usage ledger to a priced invoice in Postgres: one code path for the real invoice and the estimate.

``price_account_month`` sums the account's billable ledger rows and prices them; ``record_invoice`` stores the
result once per account and period (a second call returns the stored invoice unchanged, whatever the ledger
says by then: an invoice, once made, is fixed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from tcloud.billing_period import days_billed, days_in_period, first_day, period_bounds
from tcloud.pricing import PricedInvoice, Usage, price_book_for, price_usage

# Ledger metric -> the invoice line kind that sums it.
METRIC_LINE = {"actions": "actions", "active_storage": "active_storage", "retained_storage": "retained_storage"}


def invoice_id_for(account_id: str, period: str) -> str:
    """The invoice's id: readable, and the same for every attempt at the same account-month."""
    return f"inv-{account_id}-{period}"


@dataclass(frozen=True)
class LedgerSum:
    """The billable ledger rows of one metric of one namespace of an account over a time range."""

    metric: str
    namespace: str
    rows: int
    quantity: Decimal


@dataclass(frozen=True)
class AccountMonth:
    """An account-month priced from the ledger, with the sums each line was made from."""

    account_id: str
    period: str
    hour_from: datetime
    hour_to: datetime
    priced: PricedInvoice
    sums: tuple[LedgerSum, ...]


class UnknownAccount(LookupError):
    """The account does not exist."""


async def ledger_sums(conn: asyncpg.Connection | asyncpg.Pool, account_id: str, hour_from: datetime,
                      hour_to: datetime) -> list[LedgerSum]:
    rows = await conn.fetch(
        """SELECT metric, namespace, count(*) AS n, sum(quantity) AS q
             FROM usage_ledger
            WHERE account_id = $1 AND billable AND hour >= $2 AND hour < $3
            GROUP BY metric, namespace ORDER BY metric, namespace""",
        account_id, hour_from, hour_to,
    )
    return [LedgerSum(r["metric"], r["namespace"], r["n"], Decimal(r["q"])) for r in rows]


def usage_of(sums: list[LedgerSum] | tuple[LedgerSum, ...]) -> Usage:
    total = {metric: Decimal(0) for metric in METRIC_LINE}
    for s in sums:
        total[s.metric] += s.quantity
    return Usage(total["actions"], total["active_storage"], total["retained_storage"])


async def price_account_month(conn: asyncpg.Connection | asyncpg.Pool, account_id: str, period: str, *,
                              until: datetime | None = None) -> AccountMonth:
    """Price ``account_id``'s usage in ``period`` (up to ``until`` for a month-to-date estimate).

    Raises:
        UnknownAccount: when the account does not exist.
    """
    account = await conn.fetchrow("SELECT plan, created_at FROM accounts WHERE id = $1", account_id)
    if account is None:
        raise UnknownAccount(account_id)
    start, end = period_bounds(period)
    hour_to = end if until is None else max(start, min(end, until))
    sums = await ledger_sums(conn, account_id, start, hour_to)
    priced = price_usage(price_book_for(first_day(period)), account["plan"], usage_of(sums),
                         days_billed=days_billed(period, account["created_at"]),
                         days_in_period=days_in_period(period))
    return AccountMonth(account_id, period, start, hour_to, priced, tuple(sums))


async def record_invoice(pool: asyncpg.Pool, account_id: str, period: str) -> str:
    """Price the account-month and store the invoice with its lines and their ledger sources, once.

    Returns:
        The invoice id (stored by this call or an earlier one).
    """
    invoice_id = invoice_id_for(account_id, period)
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM invoices WHERE id = $1", invoice_id):
            return invoice_id
        month = await price_account_month(conn, account_id, period)
        priced = month.priced
        inserted = await conn.fetchval(
            """INSERT INTO invoices (id, account_id, period, period_start, period_end, plan, price_book_version,
                                     days_billed, days_in_period, currency, total_cents, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT DO NOTHING RETURNING 1""",
            invoice_id, account_id, period, month.hour_from, month.hour_to, priced.plan,
            priced.price_book_version, priced.days_billed, priced.days_in_period, priced.currency,
            priced.total_cents, "zero" if priced.total_cents == 0 else "draft",
        )
        if not inserted:
            return invoice_id
        await conn.executemany(
            """INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit, exact_amount,
                                          amount_cents, detail)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)""",
            [(invoice_id, n, line.kind, line.description, line.quantity, line.unit, line.exact_amount,
              line.amount_cents, json.dumps(line.detail)) for n, line in enumerate(priced.lines, start=1)],
        )
        line_no = {line.kind: n for n, line in enumerate(priced.lines, start=1)}
        await conn.executemany(
            """INSERT INTO invoice_line_sources (invoice_id, line_no, namespace, metric, hour_from, hour_to,
                                                 ledger_rows, quantity)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            [(invoice_id, line_no[METRIC_LINE[s.metric]], s.namespace, s.metric, month.hour_from, month.hour_to,
              s.rows, s.quantity) for s in month.sums],
        )
        await conn.execute(
            "INSERT INTO billing_events (account_id, invoice_id, kind, detail) VALUES ($1, $2, 'invoice.recorded', $3)",
            account_id, invoice_id, json.dumps({"total_cents": priced.total_cents}),
        )
    return invoice_id
