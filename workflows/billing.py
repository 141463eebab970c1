"""The monthly billing run ``billing-run/<YYYY-MM>``: wait for a complete ledger, then invoice every account
in batches (``workflows/billing_batch.py``) of ``batch_size`` accounts, ``batch_concurrency`` invoices at a time in
each and at most ``max_concurrent`` invoices at a time in all.

A batch costs a handful of Temporal actions however many accounts it holds, where a workflow per account cost
about six each and the Temporal work outweighed the Stripe and Postgres work it orchestrated (HACKING.md has the
figures). Only an account that needs more than one pass gets a workflow of its own (dunning, retries). Batches
are started with ``ABANDON`` and a duplicate id is refused unless the earlier one failed; every step of an invoice
is idempotent in Postgres and Stripe, so an account-month is invoiced and charged once however often anything
runs. Each batch signals ``batch_done``; the run continues as new every ``accounts_per_run`` accounts, carrying
what is in flight.

Runs started before batches (one invoice workflow per account, ``invoice_done`` signals) replay and finish on
the path they began on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.billing import AccountPageInput, BillingActivities, PeriodInput, RunReport
    from tcloud.domain.billing_period import period_bounds, previous_period
    from tcloud.domain.states import BillingRunPhase, BillingRunStatusName
    from workflows.billing_batch import ACCOUNTS_KEY, BatchDone, BatchInput, BillingBatchWorkflow, batch_workflow_id
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
    batch_size: int = 100
    batch_concurrency: int = 10
    # Carried across continue-as-new.
    ledger_complete: bool = False
    cursor: str = ""
    in_flight: list[str] = field(default_factory=list)  # accounts of a run from before batches
    counts: dict[str, int] = field(default_factory=dict)
    batches_in_flight: dict[str, int] = field(default_factory=dict)  # batch workflow id -> its accounts


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
        self._batches: dict[str, int] = dict(params.batches_in_flight)
        self._counts: dict[str, int] = dict(params.counts)
        self._status = BillingRunStatus(params.period, "starting", -1, params.cursor, 0, {})
        self._reporting = False
        self._batching = False

    @workflow.query
    def status(self) -> BillingRunStatus:
        self._status.in_flight = len(self._in_flight) + sum(self._batches.values())
        self._status.counts = dict(self._counts)
        return self._status

    @workflow.signal
    def batch_done(self, done: BatchDone) -> None:
        if self._batches.pop(done.batch_id, None) is not None:
            for state, n in done.counts.items():
                self._counts[state] = self._counts.get(state, 0) + n

    @workflow.signal
    def invoice_done(self, done: InvoiceDone) -> None:
        """From an account's own invoice workflow, in runs started before batches."""
        if done.account_id in self._in_flight:
            self._in_flight.discard(done.account_id)
            self._counts[done.state] = self._counts.get(done.state, 0) + 1

    @workflow.run
    async def run(self, params: BillingRunInput) -> BillingRunStatus:
        period = params.period or previous_period(workflow.now())
        self._status = BillingRunStatus(period, "waiting_for_period_end", -1, params.cursor, 0, {})
        # Runs recorded before the run reported itself to billing_runs replay without the reports, and those
        # from before batches invoice one workflow per account.
        self._reporting = workflow.patched("billing-run-reports-to-postgres")
        self._batching = workflow.patched("billing-run-batches")
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
        if self._batching:
            await self._invoice_in_batches(period, params)
        else:
            await self._invoice_one_workflow_each(period, params)
        self._status.phase = "draining"
        await self._report()
        await workflow.wait_condition(lambda: not self._in_flight and not self._batches)
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status.phase = "done"
        await self._report("completed")
        workflow.upsert_search_attributes([STATUS_KEY.value_set("done")])
        return self.status()

    async def _invoice_in_batches(self, period: str, params: BillingRunInput) -> None:
        """Start a batch per ``batch_size`` accounts, page by page, keeping ``max_concurrent`` invoices going."""
        slots = max(1, params.max_concurrent // max(1, params.batch_concurrency))
        concurrency = min(params.batch_concurrency, params.max_concurrent)
        cursor, started = params.cursor, 0
        while True:
            page = await workflow.execute_activity_method(
                BillingActivities.list_accounts, AccountPageInput(period, cursor, params.page_size),
                start_to_close_timeout=timedelta(seconds=60))
            ids = list(page.account_ids)
            size = max(1, params.batch_size)
            pending = [ids[i:i + size] for i in range(0, len(ids), size)]
            while pending:
                # As many batches as there are free slots at once: their commands share one workflow task.
                await workflow.wait_condition(lambda: len(self._batches) < slots)
                now, pending = pending[:slots - len(self._batches)], pending[slots - len(self._batches):]
                await asyncio.gather(*(self._start_batch(b, period, concurrency, params.dunning) for b in now))
                cursor = self._status.cursor = now[-1][-1]
                started += sum(len(b) for b in now)
            if len(ids) < params.page_size:
                return
            if started >= params.accounts_per_run or workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new(period, cursor, params)

    async def _start_batch(self, accounts: list[str], period: str, concurrency: int, dunning: DunningPolicy) -> None:
        batch_id = batch_workflow_id(period, accounts[0])
        # In flight before the start resolves: its batch_done signal may arrive in the same activation.
        self._batches[batch_id] = len(accounts)
        try:
            await workflow.start_child_workflow(
                BillingBatchWorkflow.run, BatchInput(period, accounts, concurrency, dunning), id=batch_id,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # Cancelling the run stops new batches; a batch started finishes (no invoice is left half-made).
                cancellation_type=workflow.ChildWorkflowCancellationType.ABANDON,
                # A failed batch may run again (its steps are idempotent); any other never does.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(ACCOUNTS_KEY, accounts), SearchAttributePair(PERIOD_KEY, period),
                    SearchAttributePair(STATUS_KEY, "invoicing")]),
            )
        except WorkflowAlreadyStartedError:
            self._batches.pop(batch_id, None)
            self._counts["already_invoiced"] = self._counts.get("already_invoiced", 0) + len(accounts)

    async def _invoice_one_workflow_each(self, period: str, params: BillingRunInput) -> None:
        """How runs started before batches invoice: one invoice workflow per account."""
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
                return
            if started >= params.accounts_per_run or workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new(period, cursor, params)

    async def _continue_as_new(self, period: str, cursor: str, params: BillingRunInput) -> NoReturn:
        """Carry the ledger check, the cursor, the counts and what is in flight into a fresh run."""
        await self._report()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(dataclasses.replace(
            params, period=period, ledger_complete=True, cursor=cursor, in_flight=sorted(self._in_flight),
            counts=dict(self._counts), batches_in_flight=dict(self._batches)))

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
                    accounts_per_run=params.accounts_per_run, dunning=params.dunning, batch_size=params.batch_size,
                    batch_concurrency=params.batch_concurrency),
                id=billing_run_id(period), parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([SearchAttributePair(PERIOD_KEY, period),
                                                         SearchAttributePair(STATUS_KEY, "running")]))
        except WorkflowAlreadyStartedError:
            return f"{billing_run_id(period)} already exists"
        return f"started {billing_run_id(period)}"
