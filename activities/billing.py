"""Billing activities: ledger completeness, the accounts to bill, recording, sending and collecting invoices,
and the dunning actions (suspend, resume, write off). Every one is safe to run twice."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.billing_stripe import InvoiceLocked, StripeSync
from tcloud.domain.billing_period import owed_hours, period_bounds
from tcloud.domain.metering import COLLECTORS
from tcloud.domain.states import BillingRunStatusName, InvoiceStatus
from tcloud.services import invoicing, spend_alerts
from tcloud.store import billing_runs
from tcloud.store import invoices as store


@dataclass
class PeriodInput:
    """``until``: only the hours before it are needed (a closed account's final invoice)."""

    period: str
    collectors: list[str] = field(default_factory=lambda: list(COLLECTORS))
    until: datetime | None = None


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
    status: InvoiceStatus
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
    status: InvoiceStatus
    attempts: int
    error: str | None = None
    resumed_account: bool = False


@dataclass
class InvoiceOutcome:
    summary: InvoiceSummary
    payment: PaymentResult | None = None


@dataclass
class InvoiceBatch:
    """Accounts to invoice for one period in one activity, ``concurrency`` of them at a time."""

    period: str
    account_ids: list[str]
    concurrency: int = 10


@dataclass
class AccountOutcome:
    """One account of a batch: its invoice as made and collected, or why it could not be made."""

    account_id: str
    outcome: InvoiceOutcome | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        """What the invoice workflow would report: zero, paid, past_due, ... or failed."""
        if self.outcome is None:
            return "failed"
        payment = self.outcome.payment
        return payment.status if payment is not None else self.outcome.summary.status


@dataclass
class BatchOutcome:
    accounts: list[AccountOutcome]


@dataclass
class RunReport:
    """What a billing run reports of itself, for the operators' API to answer without asking the workflow."""

    period: str
    workflow_id: str
    status: BillingRunStatusName
    phase: str
    missing_hours: int = -1
    counts: dict[str, int] = field(default_factory=dict)


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
        """How many collector-hours of the period are not collected yet (0: the ledger is complete).

        Hours before a collector's first collected hour are not owed: a platform installed mid-month bills that
        month from when it began metering.
        """
        began = await store.metering_began(self._pool, params.collectors)
        expected = missing = 0
        for collector in params.collectors:
            start, end = owed_hours(params.period, began.get(collector), params.until)
            owed = int((end - start).total_seconds()) // 3600
            done = await store.count_collected_hours(self._pool, [collector], start, end)
            expected, missing = expected + owed, missing + owed - done
        return Completeness(params.period, expected, missing)

    @activity.defn(name="billing.report_run")
    async def report_run(self, params: RunReport) -> None:
        """Keep the run's row in ``billing_runs`` in step with the run."""
        await billing_runs.report_billing_run(self._pool, params.period, params.workflow_id, status=params.status,
                                              phase=params.phase, missing_hours=params.missing_hours,
                                              counts=params.counts)

    @activity.defn(name="billing.list_accounts")
    async def list_accounts(self, params: AccountPageInput) -> AccountPage:
        """Accounts to invoice for the period, by id after ``after``: open ones that existed before its end,
        and closed ones with billable usage in it."""
        start, end = period_bounds(params.period)
        return AccountPage(await store.accounts_to_invoice(self._pool, start, end, after=params.after,
                                                           limit=params.limit))

    @activity.defn(name="billing.record_invoice")
    async def record_invoice(self, params: AccountPeriod) -> InvoiceSummary:
        """Price the account-month from the ledger and store it (once; later calls return the stored one)."""
        made_by = activity.info().workflow_id if activity.in_activity() else None
        invoice_id = await invoicing.record_invoice(self._pool, params.account_id, params.period,
                                                    workflow_id=made_by)
        row = await store.invoice_summary(self._pool, invoice_id)
        if row is None:  # recorded just above: only a concurrent delete could get here
            raise ApplicationError(f"invoice {invoice_id} is not recorded")
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

    @activity.defn(name="billing.make_invoices")
    async def make_invoices(self, params: InvoiceBatch) -> BatchOutcome:
        """:meth:`make_invoice` for every account of the batch, ``concurrency`` at a time: the same idempotent
        steps, so a retry after a crash redoes nothing that was done. An account whose invoice cannot be made is
        answered with its error (its own invoice workflow takes it from there); the others go on."""
        outcomes: dict[str, AccountOutcome] = {}
        gate = asyncio.Semaphore(max(1, params.concurrency))

        async def one(account_id: str) -> None:
            async with gate:
                try:
                    outcome = await self.make_invoice(AccountPeriod(account_id, params.period))
                except Exception as err:  # reported per account; its own invoice workflow retries it
                    outcomes[account_id] = AccountOutcome(account_id, error=str(err) or type(err).__name__)
                else:
                    outcomes[account_id] = AccountOutcome(account_id, outcome)
                if activity.in_activity():
                    activity.heartbeat(len(outcomes))

        await asyncio.gather(*(one(a) for a in params.account_ids))
        return BatchOutcome([outcomes[a] for a in params.account_ids])

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
        inv = await store.invoice_to_collect(conn, invoice_id)
        if inv is None or inv["stripe_invoice_id"] is None:
            raise ApplicationError(f"invoice {invoice_id} was not sent to Stripe", non_retryable=True)
        if inv["status"] in ("paid", "written_off"):
            return PaymentResult(inv["status"] == "paid", inv["status"], inv["payment_attempts"])
        state, error = await sync.pay(inv["stripe_invoice_id"])
        paid = state.status == "paid"
        recorded = await store.record_payment_attempt(conn, invoice_id, inv["account_id"], paid=paid, error=error,
                                                      stripe_status=state.status,
                                                      suspension_reason=suspension_reason(invoice_id))
        return PaymentResult(paid, "paid" if paid else "past_due", recorded.attempts, error, recorded.resumed)

    @activity.defn(name="billing.suspend_account")
    async def suspend_account(self, params: SuspendInput) -> SuspendResult:
        """Suspend the invoice's account for non-payment (an active account only; its namespaces stay)."""
        done = await store.suspend_invoice_account(self._pool, params.invoice_id,
                                                   suspension_reason=suspension_reason(params.invoice_id),
                                                   reason=params.reason)
        return SuspendResult(done)

    @activity.defn(name="billing.write_off")
    async def write_off(self, params: WriteOffInput) -> InvoiceSummary:
        """Give up collecting: mark the invoice written off and lift its dunning suspension."""
        row = await store.write_off_invoice(self._pool, params.invoice_id, reason=params.reason,
                                            suspension_reason=suspension_reason(params.invoice_id))
        if row is None:
            raise ApplicationError(f"invoice {params.invoice_id} is not recorded")
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
