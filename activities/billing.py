"""Billing activities: ledger completeness, the accounts to bill, recording, sending and collecting invoices,
and the dunning actions (suspend, resume, write off). Every one is safe to run twice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.billing_stripe import InvoiceLocked, StripeSync
from tcloud import invoicing, spend_alerts
from tcloud.billing_period import hours_in_period, period_bounds

COLLECTORS = ("actions", "storage")


@dataclass
class PeriodInput:
    period: str
    collectors: list[str] = field(default_factory=lambda: list(COLLECTORS))


@dataclass
class Completeness:
    period: str
    expected_hours: int
    missing_hours: int


@dataclass
class AccountPageInput:
    period: str
    after: str = ""
    limit: int = 500


@dataclass
class AccountPage:
    account_ids: list[str]


@dataclass
class AccountPeriod:
    account_id: str
    period: str


@dataclass
class InvoiceSummary:
    invoice_id: str
    account_id: str
    period: str
    status: str
    total_cents: int


@dataclass
class InvoiceRef:
    invoice_id: str


@dataclass
class SendResult:
    stripe_invoice_id: str
    stripe_total_cents: int


@dataclass
class PaymentResult:
    paid: bool
    status: str
    attempts: int
    error: str | None = None
    resumed_account: bool = False


@dataclass
class InvoiceOutcome:
    summary: InvoiceSummary
    payment: PaymentResult | None = None


@dataclass
class SuspendInput:
    invoice_id: str
    reason: str


@dataclass
class SuspendResult:
    suspended: bool


@dataclass
class WriteOffInput:
    invoice_id: str
    reason: str


def suspension_reason(invoice_id: str) -> str:
    """The ``accounts.status_reason`` dunning writes; only a suspension with this reason is lifted by payment."""
    return f"dunning: invoice {invoice_id} unpaid"


class BillingActivities:
    """Billing's I/O: Postgres and Stripe."""

    def __init__(self, *, pool: asyncpg.Pool, stripe_client: stripe.StripeClient):
        self._pool = pool
        self._stripe = stripe_client

    @activity.defn(name="billing.check_period_complete")
    async def check_period_complete(self, params: PeriodInput) -> Completeness:
        """How many collector-hours of the period are not collected yet (0: the ledger is complete)."""
        start, end = period_bounds(params.period)
        done = await self._pool.fetchval(
            """SELECT count(*) FROM usage_collected_hours
                WHERE collector = ANY($1::text[]) AND hour >= $2 AND hour < $3""",
            params.collectors, start, end)
        expected = hours_in_period(params.period) * len(params.collectors)
        return Completeness(params.period, expected, expected - int(done))

    @activity.defn(name="billing.list_accounts")
    async def list_accounts(self, params: AccountPageInput) -> AccountPage:
        """Accounts to invoice for the period, by id after ``after``: open ones that existed before its end,
        and closed ones with billable usage in it."""
        start, end = period_bounds(params.period)
        rows = await self._pool.fetch(
            """SELECT a.id FROM accounts a
                WHERE a.id > $3 AND a.created_at < $2
                  AND (a.status <> 'closed' OR EXISTS (
                        SELECT 1 FROM usage_ledger u
                         WHERE u.account_id = a.id AND u.billable AND u.hour >= $1 AND u.hour < $2))
                ORDER BY a.id LIMIT $4""",
            start, end, params.after, params.limit)
        return AccountPage([r["id"] for r in rows])

    @activity.defn(name="billing.record_invoice")
    async def record_invoice(self, params: AccountPeriod) -> InvoiceSummary:
        """Price the account-month from the ledger and store it (once; later calls return the stored one)."""
        invoice_id = await invoicing.record_invoice(self._pool, params.account_id, params.period)
        row = await self._pool.fetchrow("SELECT status, total_cents FROM invoices WHERE id = $1", invoice_id)
        return InvoiceSummary(invoice_id, params.account_id, params.period, row["status"], row["total_cents"])

    @activity.defn(name="billing.make_invoice")
    async def make_invoice(self, params: AccountPeriod) -> InvoiceOutcome:
        """Record, send and collect in one activity: each step is idempotent, so a retry resumes where a crash
        left off, and the usual account-month costs one activity instead of three."""
        summary = await self.record_invoice(params)
        if summary.status in ("zero", "paid", "written_off"):
            return InvoiceOutcome(summary)
        if summary.status == "draft":
            await self.send_invoice(InvoiceRef(summary.invoice_id))
        return InvoiceOutcome(summary, await self.collect_payment(InvoiceRef(summary.invoice_id)))

    @activity.defn(name="billing.send_invoice")
    async def send_invoice(self, params: InvoiceRef) -> SendResult:
        """Create the Stripe invoice with one item per non-zero line (or find the one an earlier attempt made)."""
        async with self._pool.acquire() as conn:
            sync = StripeSync(conn, self._stripe, params.invoice_id)
            try:
                await sync.lock()
            except InvoiceLocked as err:
                raise ApplicationError(f"invoice {params.invoice_id} is being sent by another attempt") from err
            try:
                state = await sync.send()
            finally:
                await sync.unlock()
        return SendResult(state.stripe_invoice_id, state.total_cents)

    @activity.defn(name="billing.collect_payment")
    async def collect_payment(self, params: InvoiceRef) -> PaymentResult:
        """Pay the Stripe invoice unless it is paid; record the outcome; lift a dunning suspension when paid."""
        async with self._pool.acquire() as conn:
            sync = StripeSync(conn, self._stripe, params.invoice_id)
            try:
                await sync.lock()
            except InvoiceLocked as err:
                raise ApplicationError(f"invoice {params.invoice_id} is being collected by another attempt") from err
            try:
                return await self._collect(conn, sync, params.invoice_id)
            finally:
                await sync.unlock()

    async def _collect(self, conn: asyncpg.Connection, sync: StripeSync, invoice_id: str) -> PaymentResult:
        inv = await conn.fetchrow("SELECT account_id, status, stripe_invoice_id, payment_attempts FROM invoices "
                                  "WHERE id = $1", invoice_id)
        if inv is None or inv["stripe_invoice_id"] is None:
            raise ApplicationError(f"invoice {invoice_id} was not sent to Stripe", non_retryable=True)
        if inv["status"] in ("paid", "written_off"):
            return PaymentResult(inv["status"] == "paid", inv["status"], inv["payment_attempts"])
        state, error = await sync.pay(inv["stripe_invoice_id"])
        paid = state.status == "paid"
        async with conn.transaction():
            row = await conn.fetchrow(
                """UPDATE invoices SET payment_attempts = payment_attempts + 1, updated_at = now(),
                          status = CASE WHEN $2 THEN 'paid' ELSE 'past_due' END,
                          paid_at = CASE WHEN $2 THEN now() ELSE paid_at END, last_payment_error = $3
                    WHERE id = $1 RETURNING payment_attempts""", invoice_id, paid, error)
            resumed = paid and await self._resume(conn, inv["account_id"], invoice_id)
            await conn.execute(
                "INSERT INTO billing_events (account_id, invoice_id, kind, detail) VALUES ($1, $2, $3, $4)",
                inv["account_id"], invoice_id, "payment.succeeded" if paid else "payment.failed",
                json.dumps({"stripe_status": state.status, "error": error}))
        return PaymentResult(paid, "paid" if paid else "past_due", row["payment_attempts"], error, resumed)

    @staticmethod
    async def _resume(conn: asyncpg.Connection, account_id: str, invoice_id: str) -> bool:
        done = await conn.fetchval(
            """UPDATE accounts SET status = 'active', status_reason = NULL, updated_at = now()
                WHERE id = $1 AND status = 'suspended' AND status_reason = $2 RETURNING 1""",
            account_id, suspension_reason(invoice_id))
        if done:
            await conn.execute("INSERT INTO billing_events (account_id, invoice_id, kind) VALUES ($1, $2, "
                               "'account.resumed')", account_id, invoice_id)
        return bool(done)

    @activity.defn(name="billing.suspend_account")
    async def suspend_account(self, params: SuspendInput) -> SuspendResult:
        """Suspend the invoice's account for non-payment (an active account only; its namespaces stay)."""
        async with self._pool.acquire() as conn, conn.transaction():
            account_id = await conn.fetchval("SELECT account_id FROM invoices WHERE id = $1", params.invoice_id)
            done = await conn.fetchval(
                """UPDATE accounts SET status = 'suspended', status_reason = $2, updated_at = now()
                    WHERE id = $1 AND status = 'active' RETURNING 1""",
                account_id, suspension_reason(params.invoice_id))
            if done:
                await conn.execute(
                    "INSERT INTO billing_events (account_id, invoice_id, kind, detail) VALUES ($1, $2, "
                    "'account.suspended', $3)", account_id, params.invoice_id, json.dumps({"reason": params.reason}))
        return SuspendResult(bool(done))

    @activity.defn(name="billing.write_off")
    async def write_off(self, params: WriteOffInput) -> InvoiceSummary:
        """Give up collecting: mark the invoice written off and lift its dunning suspension."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE invoices SET status = 'written_off', written_off_reason = $2, updated_at = now()
                    WHERE id = $1 AND status IN ('open', 'past_due')
                RETURNING account_id, period, status, total_cents""", params.invoice_id, params.reason)
            if row is None:
                row = await conn.fetchrow("SELECT account_id, period, status, total_cents FROM invoices WHERE id = $1",
                                          params.invoice_id)
            else:
                await self._resume(conn, row["account_id"], params.invoice_id)
                await conn.execute(
                    "INSERT INTO billing_events (account_id, invoice_id, kind, detail) VALUES ($1, $2, "
                    "'invoice.written_off', $3)", row["account_id"], params.invoice_id,
                    json.dumps({"reason": params.reason, "at": datetime.now(UTC).isoformat()}))
        return InvoiceSummary(params.invoice_id, row["account_id"], row["period"], row["status"], row["total_cents"])


@dataclass
class SpendAlertsInput:
    period: str
    until: datetime


@dataclass
class SpendAlertsResult:
    accounts_checked: int
    notified: dict[str, list[int]]
    deliveries_started: int = 0


class SpendAlertActivities:
    """The hourly spend-alert check (month-to-date estimate against each account's thresholds)."""

    def __init__(self, *, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="billing.check_spend_alerts")
    async def check_spend_alerts(self, params: SpendAlertsInput) -> SpendAlertsResult:
        accounts = await spend_alerts.accounts_with_alerts(self._pool)
        notified: dict[str, list[int]] = {}
        for n, account_id in enumerate(accounts):
            fresh = await spend_alerts.check_account(self._pool, account_id, params.period, until=params.until)
            if fresh:
                notified[account_id] = fresh
            if n % 50 == 0 and activity.in_activity():
                activity.heartbeat(n)
        return SpendAlertsResult(len(accounts), notified)
