"""From the usage ledger to a priced invoice in Postgres: one code path for the real invoice and the estimate.

``price_account_month`` sums the account's billable ledger rows and prices them; ``record_invoice`` stores the
result once per account and period (a second call returns the stored invoice unchanged, whatever the ledger
says by then: an invoice, once made, is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from tcloud.domain.billing_period import billed_until, days_billed, days_in_period, first_day, period_bounds
from tcloud.domain.pricing import PricedInvoice, Usage, price_book_for, price_usage
from tcloud.store import invoices as store
from tcloud.store import usage as usage_store
from tcloud.store.invoices import LedgerSum, LineSource

# Ledger metric -> the invoice line kind that sums it.
METRIC_LINE = {"actions": "actions", "active_storage": "active_storage", "retained_storage": "retained_storage"}


def invoice_id_for(account_id: str, period: str) -> str:
    """The invoice's id: readable, and the same for every attempt at the same account-month."""
    return f"inv-{account_id}-{period}"


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
    """The account's billable ledger rows in ``[hour_from, hour_to)``, counted and summed per metric and namespace
    (from the usage rollups: a month reads one row per namespace and metric, not one per hour)."""
    return await usage_store.account_ledger_sums(conn, account_id, hour_from, hour_to)


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
    account = await store.account_for_pricing(conn, account_id)
    if account is None:
        raise UnknownAccount(account_id)
    start, _ = period_bounds(period)
    hour_to = billed_until(period, account["closed_at"])  # a closed account is billed up to its closure
    if until is not None:
        hour_to = max(start, min(hour_to, until))
    sums = await ledger_sums(conn, account_id, start, hour_to)
    priced = price_usage(price_book_for(first_day(period)), account["plan"], usage_of(sums),
                         days_billed=days_billed(period, account["created_at"], account["closed_at"]),
                         days_in_period=days_in_period(period))
    return AccountMonth(account_id, period, start, hour_to, priced, tuple(sums))


async def record_invoice(pool: asyncpg.Pool, account_id: str, period: str, *, workflow_id: str | None = None) -> str:
    """Price the account-month and store the invoice with its lines and their ledger sources, once
    (``workflow_id``: the workflow making it, for operators to find).

    Returns:
        The invoice id (stored by this call or an earlier one).
    """
    invoice_id = invoice_id_for(account_id, period)
    if await store.invoice_exists(pool, invoice_id):
        return invoice_id
    month = await price_account_month(pool, account_id, period)
    priced = month.priced
    line_no = {line.kind: n for n, line in enumerate(priced.lines, start=1)}
    await store.insert_invoice_with_lines(
        pool, invoice_id, account_id=account_id, period=period, hour_from=month.hour_from, hour_to=month.hour_to,
        workflow_id=workflow_id,
        status="zero" if priced.total_cents == 0 else "draft", priced=priced,
        sources=[LineSource(line_no[METRIC_LINE[s.metric]], s.namespace, s.metric, s.rows, s.quantity)
                 for s in month.sums])
    return invoice_id
