"""Closing an account: ``account/<account_id>/close``.

The API moves the account to 'closing' (nothing new can be created, data-plane tokens are refused, usage from
then on is not billed) and starts this workflow. It waits out the grace; the account can be reopened until then
(the API changes Postgres, then signals ``reopened`` so the wait ends early). When the grace is over it closes
the account for good, deletes its namespaces through the same workflows as ``DELETE /cloud/namespaces/{ns}``,
waits until the ledger holds every hour up to the closure, and starts the final invoice
``billing/<account>/<month of closure>``: the same workflow as the monthly run's (so the run and the closure can
never make two), which collects payment and runs dunning like any other invoice. The Stripe customer is kept.

Operators: ``temporal workflow query --workflow-id account/acme/close --name status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.account_closure import AccountClosureActivities, ClosureRef
    from activities.billing import BillingActivities, PeriodInput
    from tcloud.domain.billing_period import period_of
    from workflows.billing_invoice import (
        DunningPolicy,
        InvoiceInput,
        invoice_workflow_id,
        start_own_invoice_workflow,
    )
    from workflows.namespaces import DeleteNamespaceInput, DeleteNamespaceWorkflow, delete_workflow_id

DB = timedelta(seconds=30)


def account_closure_workflow_id(account_id: str) -> str:
    return f"account/{account_id}/close"


@dataclass
class AccountClosureInput:
    account_id: str
    grace_seconds: int
    poll_seconds: int = 300
    dunning: DunningPolicy = field(default_factory=DunningPolicy)


@dataclass
class ReopenNotice:
    """Sent by the API after it reopened the account in Postgres (Postgres decides; this only ends the wait)."""

    note: str = ""


@dataclass
class AccountClosureStatus:
    account_id: str
    phase: str = "grace"  # grace|reopened|deleting_namespaces|waiting_for_usage|invoiced
    namespaces_deleted: list[str] = field(default_factory=list)
    namespaces_failed: list[str] = field(default_factory=list)
    missing_hours: int = -1
    final_invoice_workflow_id: str | None = None
    closed_at: datetime | None = None


@workflow.defn(name="AccountClosure")
class AccountClosureWorkflow:
    def __init__(self) -> None:
        self._status = AccountClosureStatus("")
        self._reopened = False

    @workflow.query
    def status(self) -> AccountClosureStatus:
        return self._status

    @workflow.signal
    def reopened(self, notice: ReopenNotice) -> None:
        self._reopened = True

    @workflow.run
    async def run(self, params: AccountClosureInput) -> AccountClosureStatus:
        self._status = AccountClosureStatus(params.account_id)
        try:
            await workflow.wait_condition(lambda: self._reopened, timeout=timedelta(seconds=params.grace_seconds))
        except TimeoutError:
            pass
        finished = await workflow.execute_activity_method(
            AccountClosureActivities.finish_closure, ClosureRef(params.account_id), start_to_close_timeout=DB)
        if not finished.closed or finished.closed_at is None:
            self._status.phase = "reopened"
            return self._status
        self._status.closed_at = finished.closed_at
        self._status.phase = "deleting_namespaces"
        await self._delete_namespaces(params.account_id)
        self._status.phase = "waiting_for_usage"
        period = period_of(finished.closed_at)
        await self._wait_for_ledger(period, finished.closed_at, params.poll_seconds)
        self._status.final_invoice_workflow_id = await self._start_final_invoice(
            params.account_id, period, params.dunning)
        self._status.phase = "invoiced"
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._status.namespaces_failed:  # the account is closed and invoiced; an operator finishes these
            raise ApplicationError(f"namespaces not deleted: {self._status.namespaces_failed}", non_retryable=True)
        return self._status

    async def _delete_namespaces(self, account_id: str) -> None:
        todo = await workflow.execute_activity_method(
            AccountClosureActivities.begin_namespace_deletions, ClosureRef(account_id), start_to_close_timeout=DB)
        for namespace in todo.namespaces:
            try:
                await workflow.execute_child_workflow(
                    DeleteNamespaceWorkflow.run, DeleteNamespaceInput(namespace), id=delete_workflow_id(namespace))
            except WorkflowAlreadyStartedError:  # the customer's own deletion is under way
                pass
            except ChildWorkflowError as err:  # it marked the namespace failed; the rest of the closure goes on
                workflow.logger.warning("deleting %s failed: %s", namespace, err.cause or err)
                self._status.namespaces_failed.append(namespace)
                continue
            self._status.namespaces_deleted.append(namespace)

    async def _wait_for_ledger(self, period: str, closed_at: datetime, poll_seconds: int) -> None:
        while True:
            done = await workflow.execute_activity_method(
                BillingActivities.check_period_complete, PeriodInput(period, until=closed_at),
                start_to_close_timeout=DB)
            self._status.missing_hours = done.missing_hours
            if done.missing_hours == 0:
                return
            await workflow.sleep(timedelta(seconds=poll_seconds))

    async def _start_final_invoice(self, account_id: str, period: str, dunning: DunningPolicy) -> str:
        """Start the final invoice unless the monthly run has started it already; it collects on its own."""
        await start_own_invoice_workflow(InvoiceInput(account_id, period, dunning, notify_parent=False),
                                         status="invoicing")
        return invoice_workflow_id(account_id, period)
