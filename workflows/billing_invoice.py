"""The per-account invoice workflow ``billing/<account>/<YYYY-MM>``: record, send, collect, then dunning.

Operators act on it with the temporal CLI, e.g.::

    temporal workflow query  --workflow-id billing/acme/2026-10 --name status
    temporal workflow signal --workflow-id billing/acme/2026-10 --name retry_payment --input '{}'
    temporal workflow signal --workflow-id billing/acme/2026-10 --name write_off --input '{"reason": "goodwill"}'

``POST /webhooks/stripe`` signals ``payment_succeeded`` / ``payment_failed`` on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.billing import (
        AccountPeriod,
        BillingActivities,
        InvoiceOutcome,
        InvoiceRef,
        SuspendInput,
        WriteOffInput,
    )

ACCOUNT_KEY = SearchAttributeKey.for_keyword("TcloudAccount")
PERIOD_KEY = SearchAttributeKey.for_keyword("TcloudPeriod")
STATUS_KEY = SearchAttributeKey.for_keyword("TcloudStatus")

SHORT = timedelta(seconds=30)
STRIPE = timedelta(seconds=60)
HEARTBEAT = timedelta(seconds=15)


def invoice_workflow_id(account_id: str, period: str) -> str:
    return f"billing/{account_id}/{period}"


@dataclass
class DunningPolicy:
    """When to retry a failed payment (hours after the first failure) and when to suspend the account."""

    retry_after_hours: list[int] = field(default_factory=lambda: [72, 120, 168, 336])
    suspend_after_hours: int = 240


@dataclass
class InvoiceInput:
    """``made``: the invoice as a billing batch already made and tried to collect it; this workflow then only runs
    dunning (a batch hands over each account whose payment failed)."""

    account_id: str
    period: str
    dunning: DunningPolicy = field(default_factory=DunningPolicy)
    notify_parent: bool = True
    made: InvoiceOutcome | None = None


@dataclass
class InvoiceStatus:
    """What the ``status`` query answers and the workflow returns."""

    account_id: str
    period: str
    state: str = "invoicing"  # invoicing|collecting|zero|paid|past_due|written_off|failed
    invoice_id: str | None = None
    total_cents: int | None = None
    payment_attempts: int = 0
    suspended: bool = False
    last_error: str | None = None


@dataclass
class PaymentNotice:
    """A Stripe webhook about this invoice (the workflow re-checks Stripe; it never trusts the notice)."""

    event: str = ""
    stripe_invoice_id: str = ""


@dataclass
class RetryRequest:
    note: str = ""


@dataclass
class WriteOffRequest:
    reason: str = "written off by an operator"


@dataclass
class InvoiceDone:
    """Sent to the billing run once the invoice is made (paid, zero, past due or failed)."""

    account_id: str
    state: str


@workflow.defn(name="BillingInvoice")
class InvoiceWorkflow:
    def __init__(self) -> None:
        self._status = InvoiceStatus("", "")
        self._payment_poke = False
        self._write_off: str | None = None

    @workflow.query
    def status(self) -> InvoiceStatus:
        return self._status

    @workflow.signal
    def payment_succeeded(self, notice: PaymentNotice) -> None:
        self._payment_poke = True

    @workflow.signal
    def payment_failed(self, notice: PaymentNotice) -> None:
        """Recorded by the collect activity already; nothing to do but stay in dunning."""

    @workflow.signal
    def retry_payment(self, request: RetryRequest) -> None:
        self._payment_poke = True

    @workflow.signal
    def write_off(self, request: WriteOffRequest) -> None:
        self._write_off = request.reason or "written off by an operator"

    @workflow.run
    async def run(self, params: InvoiceInput) -> InvoiceStatus:
        self._status = InvoiceStatus(params.account_id, params.period)
        try:
            outcome = params.made
            if outcome is None:
                outcome = await workflow.execute_activity_method(
                    BillingActivities.make_invoice, AccountPeriod(params.account_id, params.period),
                    start_to_close_timeout=STRIPE, heartbeat_timeout=HEARTBEAT)
            summary, payment = outcome.summary, outcome.payment
            self._status.invoice_id, self._status.total_cents = summary.invoice_id, summary.total_cents
            self._status.state = summary.status
            if payment is not None:
                self._status.state, self._status.payment_attempts = payment.status, payment.attempts
                self._status.last_error = payment.error
        except ActivityError as err:
            self._status.state, self._status.last_error = "failed", str(err.cause or err)
            await self._finish_phase(params)
            raise ApplicationError(f"invoice {params.account_id}/{params.period} failed: {self._status.last_error}",
                                   non_retryable=True) from err
        await self._finish_phase(params)
        if self._status.state == "past_due":
            await self._dunning(params.dunning)
            workflow.upsert_search_attributes([STATUS_KEY.value_set(self._status.state)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    async def _collect(self) -> None:
        assert self._status.invoice_id is not None
        self._status.state = "collecting"
        result = await workflow.execute_activity_method(
            BillingActivities.collect_payment, InvoiceRef(self._status.invoice_id),
            start_to_close_timeout=STRIPE, heartbeat_timeout=HEARTBEAT)
        self._status.state, self._status.payment_attempts = result.status, result.attempts
        self._status.last_error = result.error
        if result.resumed_account:
            self._status.suspended = False

    async def _finish_phase(self, params: InvoiceInput) -> None:
        """Tell the billing run this account is done with (it bounds how many run at once), and label it."""
        workflow.upsert_search_attributes([STATUS_KEY.value_set(self._status.state)])
        parent = workflow.info().parent
        if params.notify_parent and parent is not None:
            try:
                await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                    "invoice_done", InvoiceDone(params.account_id, self._status.state))
            except Exception:  # the run was terminated or reset: nothing waits for this account any more
                workflow.logger.warning("billing run %s is gone; not notified", parent.workflow_id)

    async def _dunning(self, policy: DunningPolicy) -> None:
        """Retry on the policy's schedule, on a payment webhook or on an operator's signal; suspend after
        the grace period; stop when paid or written off."""
        failed_at = workflow.now()
        retry_at: list[datetime] = [failed_at + timedelta(hours=h) for h in sorted(policy.retry_after_hours)]
        suspend_at = failed_at + timedelta(hours=policy.suspend_after_hours)
        while self._status.state == "past_due":
            deadlines = retry_at[:1] + ([] if self._status.suspended else [suspend_at])
            try:
                timeout = max(min(deadlines) - workflow.now(), timedelta(0)) if deadlines else None
                await workflow.wait_condition(lambda: self._payment_poke or self._write_off is not None,
                                              timeout=timeout)
            except TimeoutError:
                pass
            assert self._status.invoice_id is not None
            if self._write_off is not None:
                done = await workflow.execute_activity_method(
                    BillingActivities.write_off, WriteOffInput(self._status.invoice_id, self._write_off),
                    start_to_close_timeout=SHORT)
                self._status.state, self._status.suspended = done.status, False
                break
            now = workflow.now()
            if not self._status.suspended and now >= suspend_at:
                result = await workflow.execute_activity_method(
                    BillingActivities.suspend_account,
                    SuspendInput(self._status.invoice_id, f"unpaid {policy.suspend_after_hours}h after failure"),
                    start_to_close_timeout=SHORT)
                self._status.suspended = result.suspended or self._status.suspended
                workflow.upsert_search_attributes([STATUS_KEY.value_set("suspended")])
            due = bool(retry_at) and now >= retry_at[0]
            if due:
                retry_at.pop(0)
            if due or self._payment_poke:
                self._payment_poke = False
                await self._collect()


async def start_own_invoice_workflow(params: InvoiceInput, *, status: str) -> bool:
    """From a workflow: start ``billing/<account>/<period>`` on its own (it outlives the caller and a cancellation
    of it), labelled ``status``, unless it exists already (a failed one may run again: its steps are idempotent).

    Returns:
        Whether this call started it.
    """
    try:
        await workflow.start_child_workflow(
            InvoiceWorkflow.run, params, id=invoice_workflow_id(params.account_id, params.period),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            cancellation_type=workflow.ChildWorkflowCancellationType.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(ACCOUNT_KEY, params.account_id), SearchAttributePair(PERIOD_KEY, params.period),
                SearchAttributePair(STATUS_KEY, status)]))
    except WorkflowAlreadyStartedError:
        return False
    return True
