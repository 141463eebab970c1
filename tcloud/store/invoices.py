"""Billing tables: ``invoices``, ``invoice_lines``, ``invoice_line_sources``, ``billing_events``, ``stripe_objects``,
what billing reads of ``accounts`` (and the dunning status changes it writes), and the usage reads pricing needs.

The invariant of invoicing lives in :func:`insert_invoice_with_lines`: an invoice, its lines, the ledger sources of
each line and the 'invoice.recorded' event are written together, in one transaction, once per invoice id. Each
dunning step (a payment attempt, a suspension, a write-off) is likewise one function and one transaction with the
billing event that records it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from tcloud.domain.pricing import PricedInvoice
from tcloud.store._connections import connection

# The first key of the per-invoice advisory lock held while an invoice is sent or collected.
_LOCK_NAMESPACE = 0x7C10_0301


@dataclass(frozen=True)
class LedgerSum:
    """The billable ledger rows of one metric of one namespace of an account over a time range."""

    metric: str
    namespace: str
    rows: int
    quantity: Decimal


@dataclass(frozen=True)
class LineSource:
    """The ledger rows one invoice line sums for one namespace (the line's hours are the invoice's)."""

    line_no: int
    namespace: str
    metric: str
    ledger_rows: int
    quantity: Decimal


@dataclass(frozen=True)
class PaymentRecorded:
    """A payment attempt as recorded: the invoice's attempt count and whether its dunning suspension was lifted."""

    attempts: int
    resumed: bool



# Usage and accounts, as billing reads them.

async def count_collected_hours(conn: asyncpg.Pool | asyncpg.Connection, collectors: Sequence[str], start: datetime,
                                end: datetime) -> int:
    """How many ``(collector, hour)`` rows of ``collectors`` are collected within ``[start, end)``."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM usage_collected_hours
            WHERE collector = ANY($1::text[]) AND hour >= $2 AND hour < $3""",
        list(collectors), start, end))


async def metering_began(conn: asyncpg.Pool | asyncpg.Connection, collectors: Sequence[str]
                         ) -> dict[str, datetime]:
    """The first hour each of ``collectors`` ever collected (a collector that never collected is absent)."""
    rows = await conn.fetch(
        """SELECT collector, min(hour) AS first FROM usage_collected_hours
            WHERE collector = ANY($1::text[]) GROUP BY collector""", list(collectors))
    return {r["collector"]: r["first"] for r in rows}


async def ledger_sums(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, hour_from: datetime,
                      hour_to: datetime) -> list[LedgerSum]:
    """The account's billable ledger rows in ``[hour_from, hour_to)``, summed by metric and namespace, in that order."""
    rows = await conn.fetch(
        """SELECT metric, namespace, count(*) AS n, sum(quantity) AS q
             FROM usage_ledger
            WHERE account_id = $1 AND billable AND hour >= $2 AND hour < $3
            GROUP BY metric, namespace ORDER BY metric, namespace""",
        account_id, hour_from, hour_to,
    )
    return [LedgerSum(r["metric"], r["namespace"], r["n"], Decimal(r["q"])) for r in rows]


async def account_for_pricing(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's ``plan``, ``created_at`` and ``closed_at``, or None when there is no such account."""
    return await conn.fetchrow("SELECT plan, created_at, closed_at FROM accounts WHERE id = $1", account_id)


async def accounts_to_invoice(conn: asyncpg.Pool | asyncpg.Connection, start: datetime, end: datetime, *, after: str,
                              limit: int) -> list[str]:
    """Ids after ``after`` (at most ``limit``) of the accounts that existed in ``[start, end)``: created before its
    end and not closed (or closing) before its start. A closed account is billed up to its closure, never after."""
    rows = await conn.fetch(
        """SELECT a.id FROM accounts a
            WHERE a.id > $3 AND a.created_at < $2 AND (a.closed_at IS NULL OR a.closed_at > $1)
            ORDER BY a.id LIMIT $4""",
        start, end, after, limit)
    return [r["id"] for r in rows]


# Recording an invoice.

async def invoice_exists(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> bool:
    """Whether the invoice is recorded."""
    return bool(await conn.fetchval("SELECT 1 FROM invoices WHERE id = $1", invoice_id))


async def insert_invoice_with_lines(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, *, account_id: str,
                                    period: str, hour_from: datetime, hour_to: datetime, status: str,
                                    priced: PricedInvoice, sources: Sequence[LineSource],
                                    workflow_id: str | None = None) -> bool:
    """Store the invoice, its lines (numbered from 1), their ledger sources and its event in one transaction, once.

    Returns:
        Whether this call stored it (False: the invoice was already recorded, and nothing was written).
    """
    async with connection(conn) as c, c.transaction():
        inserted = await c.fetchval(
            """INSERT INTO invoices (id, account_id, period, period_start, period_end, plan, price_book_version,
                                     days_billed, days_in_period, currency, total_cents, status, workflow_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT DO NOTHING RETURNING 1""",
            invoice_id, account_id, period, hour_from, hour_to, priced.plan, priced.price_book_version,
            priced.days_billed, priced.days_in_period, priced.currency, priced.total_cents, status, workflow_id,
        )
        if not inserted:
            return False
        await c.executemany(
            """INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit, exact_amount,
                                          amount_cents, detail)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)""",
            [(invoice_id, n, line.kind, line.description, line.quantity, line.unit, line.exact_amount,
              line.amount_cents, json.dumps(line.detail)) for n, line in enumerate(priced.lines, start=1)],
        )
        await c.executemany(
            """INSERT INTO invoice_line_sources (invoice_id, line_no, namespace, metric, hour_from, hour_to,
                                                 ledger_rows, quantity)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            [(invoice_id, s.line_no, s.namespace, s.metric, hour_from, hour_to, s.ledger_rows, s.quantity)
             for s in sources],
        )
        await insert_billing_event(c, account_id, "invoice.recorded", invoice_id=invoice_id,
                                   detail={"total_cents": priced.total_cents})
    return True


# Reading invoices.

async def invoice_summary(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    """The invoice's ``account_id``, ``period``, ``status`` and ``total_cents``, or None when not recorded."""
    return await conn.fetchrow("SELECT account_id, period, status, total_cents FROM invoices WHERE id = $1",
                               invoice_id)


async def account_invoice(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str,
                          account_id: str) -> asyncpg.Record | None:
    """The invoice (every column) if it is ``account_id``'s, else None."""
    return await conn.fetchrow("SELECT * FROM invoices WHERE id = $1 AND account_id = $2", invoice_id, account_id)


async def account_invoices(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *, status: str | None,
                           limit: int) -> list[asyncpg.Record]:
    """The account's invoices (every column), newest period first, in ``status`` when given."""
    return list(await conn.fetch(
        """SELECT * FROM invoices WHERE account_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY period DESC LIMIT $3""", account_id, status, limit))


async def all_invoices(conn: asyncpg.Pool | asyncpg.Connection, *, status: str | None, period: str | None,
                       limit: int) -> list[asyncpg.Record]:
    """Every account's invoices (every column), newest period first then by account, filtered when given."""
    return list(await conn.fetch(
        """SELECT * FROM invoices WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR period = $2)
            ORDER BY period DESC, account_id LIMIT $3""", status, period, limit))


async def invoice_lines(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    """The invoice's lines (every column) by line number, each with ``ledger_rows``: the ledger rows it sums."""
    return list(await conn.fetch(
        """SELECT l.*, (SELECT sum(s.ledger_rows) FROM invoice_line_sources s
                         WHERE s.invoice_id = l.invoice_id AND s.line_no = l.line_no)::int AS ledger_rows
              FROM invoice_lines l WHERE l.invoice_id = $1 ORDER BY l.line_no""", invoice_id))


async def invoice_counts_by_status(conn: asyncpg.Pool | asyncpg.Connection, period: str | None = None
                                   ) -> dict[str, int]:
    """How many invoices (of ``period``, or of all periods) are in each status (statuses with none are left out).

    Raises:
        asyncpg.UndefinedTableError: the billing migration has not been applied yet.
    """
    return {r["status"]: r["n"] for r in await conn.fetch(
        "SELECT status, count(*)::int AS n FROM invoices WHERE $1::text IS NULL OR period = $1 GROUP BY status",
        period)}


async def invoice_by_stripe_id(conn: asyncpg.Pool | asyncpg.Connection,
                               stripe_invoice_id: str) -> asyncpg.Record | None:
    """``id``, ``account_id`` and ``period`` of the invoice sent as ``stripe_invoice_id``, or None if not ours."""
    return await conn.fetchrow("SELECT id, account_id, period FROM invoices WHERE stripe_invoice_id = $1",
                               stripe_invoice_id)


# The billing log.

async def insert_billing_event(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, kind: str, *,
                               invoice_id: str | None = None, detail: Mapping[str, object] | None = None) -> None:
    """Append an event to the account's billing log (``detail`` is stored as JSON, ``{}`` when not given)."""
    await conn.execute(
        "INSERT INTO billing_events (account_id, invoice_id, kind, detail) VALUES ($1, $2, $3, $4)",
        account_id, invoice_id, kind, json.dumps(dict(detail or {})))


# Sending an invoice to Stripe.

async def try_lock_invoice(conn: asyncpg.Connection, invoice_id: str) -> bool:
    """Take the invoice's session advisory lock on this connection if free (one connection, never a pool)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_NAMESPACE, invoice_id))


async def unlock_invoice(conn: asyncpg.Connection, invoice_id: str) -> None:
    """Release the invoice's advisory lock taken by :func:`try_lock_invoice` on this connection."""
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_NAMESPACE, invoice_id)


async def stripe_object(conn: asyncpg.Pool | asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """The ``state`` and ``stripe_id`` recorded for ``key``, or None when no attempt has begun creating it."""
    return await conn.fetchrow("SELECT state, stripe_id FROM stripe_objects WHERE key = $1", key)


async def mark_stripe_object_creating(conn: asyncpg.Pool | asyncpg.Connection, key: str, kind: str,
                                      account_id: str | None) -> None:
    """Note that an attempt is about to create the Stripe object for ``key`` (a new row is 'creating')."""
    await conn.execute(
        """INSERT INTO stripe_objects (key, kind, account_id, state) VALUES ($1, $2, $3, 'creating')
           ON CONFLICT (key) DO UPDATE SET updated_at = now()""", key, kind, account_id)


async def record_stripe_object(conn: asyncpg.Pool | asyncpg.Connection, key: str, kind: str, account_id: str | None,
                               stripe_id: str) -> None:
    """Record the Stripe object made (or found) for ``key`` as 'created'."""
    await conn.execute(
        """INSERT INTO stripe_objects (key, kind, account_id, state, stripe_id) VALUES ($1, $2, $3, 'created', $4)
           ON CONFLICT (key) DO UPDATE SET state = 'created', stripe_id = $4, updated_at = now()""",
        key, kind, account_id, stripe_id)


async def invoice_to_send(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    """The invoice's ``account_id``, ``period``, ``status``, ``total_cents``, ``stripe_invoice_id`` and its account's
    ``stripe_customer_id``, or None when not recorded."""
    return await conn.fetchrow(
        """SELECT i.account_id, i.period, i.status, i.total_cents, i.stripe_invoice_id, a.stripe_customer_id
             FROM invoices i JOIN accounts a ON a.id = i.account_id WHERE i.id = $1""", invoice_id)


async def billable_lines(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    """The invoice's lines (every column) with a non-zero amount, by line number."""
    return list(await conn.fetch(
        "SELECT * FROM invoice_lines WHERE invoice_id = $1 AND amount_cents > 0 ORDER BY line_no", invoice_id))


async def set_line_stripe_item(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, line_no: int,
                               stripe_invoice_item_id: str) -> None:
    """Record the Stripe invoice item that bills the line."""
    await conn.execute(
        "UPDATE invoice_lines SET stripe_invoice_item_id = $3 WHERE invoice_id = $1 AND line_no = $2",
        invoice_id, line_no, stripe_invoice_item_id)


async def mark_invoice_sent(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, stripe_invoice_id: str,
                            hosted_invoice_url: str | None) -> None:
    """Record the Stripe invoice the invoice was sent as; a draft becomes 'open'."""
    await conn.execute(
        """UPDATE invoices SET stripe_invoice_id = $2, hosted_invoice_url = $3, sent_at = now(), updated_at = now(),
                               status = CASE WHEN status = 'draft' THEN 'open' ELSE status END
            WHERE id = $1""", invoice_id, stripe_invoice_id, hosted_invoice_url)


# Collecting and dunning.

async def invoice_to_collect(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str) -> asyncpg.Record | None:
    """The invoice's ``account_id``, ``status``, ``stripe_invoice_id`` and ``payment_attempts``, or None."""
    return await conn.fetchrow("SELECT account_id, status, stripe_invoice_id, payment_attempts FROM invoices "
                               "WHERE id = $1", invoice_id)


async def record_payment_attempt(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, account_id: str, *,
                                 paid: bool, error: str | None, stripe_status: str,
                                 suspension_reason: str) -> PaymentRecorded:
    """Count the attempt and its outcome (paid or past due), lift the account's suspension with
    ``suspension_reason`` when paid, and log the payment event, in one transaction."""
    async with connection(conn) as c, c.transaction():
        row = await c.fetchrow(
            """UPDATE invoices SET payment_attempts = payment_attempts + 1, updated_at = now(),
                      status = CASE WHEN $2 THEN 'paid' ELSE 'past_due' END,
                      paid_at = CASE WHEN $2 THEN now() ELSE paid_at END, last_payment_error = $3
                WHERE id = $1 RETURNING payment_attempts""", invoice_id, paid, error)
        resumed = paid and await _resume_account(c, account_id, invoice_id, suspension_reason)
        await insert_billing_event(c, account_id, "payment.succeeded" if paid else "payment.failed",
                                   invoice_id=invoice_id, detail={"stripe_status": stripe_status, "error": error})
    return PaymentRecorded(row["payment_attempts"], resumed)


async def _resume_account(conn: asyncpg.Connection, account_id: str, invoice_id: str, suspension_reason: str) -> bool:
    """Reactivate the account if suspended for ``suspension_reason`` and log it (inside the caller's transaction)."""
    done = await conn.fetchval(
        """UPDATE accounts SET status = 'active', status_reason = NULL, updated_at = now()
            WHERE id = $1 AND status = 'suspended' AND status_reason = $2 RETURNING 1""",
        account_id, suspension_reason)
    if done:
        await insert_billing_event(conn, account_id, "account.resumed", invoice_id=invoice_id)
    return bool(done)


async def suspend_invoice_account(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, *,
                                  suspension_reason: str, reason: str) -> bool:
    """Suspend the invoice's account with ``suspension_reason`` if active, and log why, in one transaction.

    Returns:
        Whether this call suspended it.
    """
    async with connection(conn) as c, c.transaction():
        account_id = await c.fetchval("SELECT account_id FROM invoices WHERE id = $1", invoice_id)
        done = await c.fetchval(
            """UPDATE accounts SET status = 'suspended', status_reason = $2, updated_at = now()
                WHERE id = $1 AND status = 'active' RETURNING 1""",
            account_id, suspension_reason)
        if done:
            await insert_billing_event(c, account_id, "account.suspended", invoice_id=invoice_id,
                                       detail={"reason": reason})
    return bool(done)


async def write_off_invoice(conn: asyncpg.Pool | asyncpg.Connection, invoice_id: str, *, reason: str,
                            suspension_reason: str) -> asyncpg.Record | None:
    """Mark an open or past-due invoice written off, lift the account's suspension with ``suspension_reason`` and
    log it, in one transaction; an invoice in another status is left as it is.

    Returns:
        The invoice's ``account_id``, ``period``, ``status`` and ``total_cents`` afterwards (None: not recorded).
    """
    async with connection(conn) as c, c.transaction():
        row = await c.fetchrow(
            """UPDATE invoices SET status = 'written_off', written_off_reason = $2, updated_at = now()
                WHERE id = $1 AND status IN ('open', 'past_due')
            RETURNING account_id, period, status, total_cents""", invoice_id, reason)
        if row is None:
            row = await c.fetchrow("SELECT account_id, period, status, total_cents FROM invoices WHERE id = $1",
                                   invoice_id)
        else:
            await _resume_account(c, row["account_id"], invoice_id, suspension_reason)
            await insert_billing_event(c, row["account_id"], "invoice.written_off", invoice_id=invoice_id,
                                       detail={"reason": reason, "at": datetime.now(UTC).isoformat()})
    return row


async def past_due_periods(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> list[str]:
    """The periods (YYYY-MM) of the account's past-due invoices, oldest first."""
    return [r["period"] for r in await conn.fetch(
        "SELECT period FROM invoices WHERE account_id = $1 AND status = 'past_due' ORDER BY period", account_id)]
