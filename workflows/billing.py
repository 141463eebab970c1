"""The monthly billing run ``billing-run/<YYYY-MM>``: wait for a complete ledger, then one invoice workflow
per account, at most ``max_concurrent`` at a time.

Children are started with ``ABANDON`` (an account in dunning outlives the run) and a duplicate id is refused
unless the earlier one failed, so an account-month is invoiced once however often the run is started. Each
child signals ``invoice_done`` when its invoice is made; the run continues as new every ``accounts_per_run``
starts, carrying what is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.billing import AccountPageInput, BillingActivities, PeriodInput, RunReport
    from tcloud.domain.billing_period import period_bounds, previous_period
    from tcloud.domain.states import BillingRunPhase, BillingRunStatusName
    from workflows.billing_invoice import (
        ACCOUNT_KEY,
        PERIOD_KEY,
        STATUS_KEY,
        DunningPolicy,
        InvoiceDone,
        InvoiceInput,
        InvoiceWorkflow,
        invoice_workflow_id,
    )


def billing_run_id(period: str) -> str:
    return f"billing-run/{period}"


@dataclass
class BillingRunInput:
    """``period`` empty: the month that closed before the run started (what the monthly Schedule sends)."""

    period: str = ""
    grace_hours: int = 6
    poll_minutes: int = 30
    max_concurrent: int = 50
    page_size: int = 500
    accounts_per_run: int = 1000
    dunning: DunningPolicy = field(default_factory=DunningPolicy)
    # Carried across continue-as-new.
    ledger_complete: bool = False
    cursor: str = ""
    in_flight: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class BillingRunStatus:
    period: str
    phase: BillingRunPhase
    missing_hours: int
    cursor: str
    in_flight: int
    counts: dict[str, int]


@workflow.defn(name="BillingRun")
class BillingRunWorkflow:
    @workflow.init
    def __init__(self, params: BillingRunInput) -> None:
        # From the input, before any signal: after continue-as-new, an invoice_done for an account carried
        # in flight can be the first thing this run handles.
        self._in_flight: set[str] = set(params.in_flight)
        self._counts: dict[str, int] = dict(params.counts)
        self._status = BillingRunStatus(params.period, "starting", -1, params.cursor, 0, {})
        self._reporting = False

    @workflow.query
    def status(self) -> BillingRunStatus:
        self._status.in_flight, self._status.counts = len(self._in_flight), dict(self._counts)
        return self._status

    @workflow.signal
    def invoice_done(self, done: InvoiceDone) -> None:
        if done.account_id in self._in_flight:
            self._in_flight.discard(done.account_id)
            self._counts[done.state] = self._counts.get(done.state, 0) + 1

    @workflow.run
    async def run(self, params: BillingRunInput) -> BillingRunStatus:
        period = params.period or previous_period(workflow.now())
        self._status = BillingRunStatus(period, "waiting_for_period_end", -1, params.cursor, 0, {})
        # Runs recorded before the run reported itself to billing_runs replay without the reports.
        self._reporting = workflow.patched("billing-run-reports-to-postgres")
        try:
            return await self._run(period, params)
        except asyncio.CancelledError:
            await self._report("cancelled")
            raise
        except FailureError:
            await self._report("failed")
            raise

    async def _run(self, period: str, params: BillingRunInput) -> BillingRunStatus:
        if not params.cursor:  # label the run for the UI once (started by the tick, the API or the CLI)
            workflow.upsert_search_attributes([PERIOD_KEY.value_set(period), STATUS_KEY.value_set("running")])
        if params.ledger_complete:  # carried across continue-as-new
            self._status.missing_hours = 0
        else:
            await self._report()
            await self._wait_for_ledger(period, params)
        self._status.phase = "invoicing"
        await self._report()
        cursor, started = params.cursor, 0
        while True:
            page = await workflow.execute_activity_method(
                BillingActivities.list_accounts, AccountPageInput(period, cursor, params.page_size),
                start_to_close_timeout=timedelta(seconds=60))
            pending = list(page.account_ids)
            while pending:
                # Start as many as there are free slots at once: their commands share one workflow task.
                await workflow.wait_condition(lambda: len(self._in_flight) < params.max_concurrent)
                free = params.max_concurrent - len(self._in_flight)
                batch, pending = pending[:free], pending[free:]
                await asyncio.gather(*(self._start_child(a, period, params.dunning) for a in batch))
                cursor = self._status.cursor = batch[-1]
                started += len(batch)
            if len(page.account_ids) < params.page_size:
                break
            if started >= params.accounts_per_run or workflow.info().is_continue_as_new_suggested():
                await self._report()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(dataclasses.replace(
                    params, period=period, ledger_complete=True, cursor=cursor, in_flight=sorted(self._in_flight),
                    counts=dict(self._counts)))
        self._status.phase = "draining"
        await self._report()
        await workflow.wait_condition(lambda: not self._in_flight)
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status.phase = "done"
        await self._report("completed")
        workflow.upsert_search_attributes([STATUS_KEY.value_set("done")])
        return self.status()

    async def _report(self, status: BillingRunStatusName = "running") -> None:
        """Write where the run is to ``billing_runs`` (what GET /admin/billing/runs/{period} answers from)."""
        if not self._reporting:
            return
        current = self.status()
        await workflow.execute_activity_method(
            BillingActivities.report_run,
            RunReport(current.period, workflow.info().workflow_id, status, current.phase, current.missing_hours,
                      current.counts),
            start_to_close_timeout=timedelta(seconds=30))

    async def _wait_for_ledger(self, period: str, params: BillingRunInput) -> None:
        _, end = period_bounds(period)
        not_before = end + timedelta(hours=params.grace_hours)
        if workflow.now() < not_before:
            await workflow.sleep(not_before - workflow.now())
        self._status.phase = "waiting_for_usage"
        while True:
            done = await workflow.execute_activity_method(
                BillingActivities.check_period_complete, PeriodInput(period),
                start_to_close_timeout=timedelta(seconds=30))
            if done.missing_hours != self._status.missing_hours:
                self._status.missing_hours = done.missing_hours
                await self._report()
            if done.missing_hours == 0:
                return
            await workflow.sleep(timedelta(minutes=params.poll_minutes))

    async def _start_child(self, account_id: str, period: str, dunning: DunningPolicy) -> None:
        # In flight before the start resolves: its invoice_done signal may arrive in the same activation.
        self._in_flight.add(account_id)
        try:
            await workflow.start_child_workflow(
                InvoiceWorkflow.run, InvoiceInput(account_id, period, dunning),
                id=invoice_workflow_id(account_id, period),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # A failed invoice workflow may run again (its steps are idempotent); any other never does.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(ACCOUNT_KEY, account_id), SearchAttributePair(PERIOD_KEY, period),
                    SearchAttributePair(STATUS_KEY, "invoicing")]),
            )
        except WorkflowAlreadyStartedError:
            self._in_flight.discard(account_id)
            self._counts["already_invoiced"] = self._counts.get("already_invoiced", 0) + 1


@workflow.defn(name="BillingMonthlyTick")
class BillingMonthlyTick:
    """What the monthly Schedule starts: the run ``billing-run/<month that closed>``, once (duplicates refused)."""

    @workflow.run
    async def run(self, params: BillingRunInput) -> str:
        period = params.period or previous_period(workflow.now())
        try:
            await workflow.start_child_workflow(
                BillingRunWorkflow.run, BillingRunInput(
                    period=period, grace_hours=params.grace_hours, poll_minutes=params.poll_minutes,
                    max_concurrent=params.max_concurrent, page_size=params.page_size,
                    accounts_per_run=params.accounts_per_run, dunning=params.dunning),
                id=billing_run_id(period), parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([SearchAttributePair(PERIOD_KEY, period),
                                                         SearchAttributePair(STATUS_KEY, "running")]))
        except WorkflowAlreadyStartedError:
            return f"{billing_run_id(period)} already exists"
        return f"started {billing_run_id(period)}"
