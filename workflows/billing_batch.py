"""A batch of accounts invoiced for one period: ``billing-batch/<YYYY-MM>/<first account>``.

One activity makes, sends and collects every account's invoice (the same idempotent steps as an account's own
invoice workflow), ``concurrency`` at a time; the batch then hands each account that needs more than that to its
own workflow ``billing/<account>/<YYYY-MM>``: a failed payment for dunning (retry, write-off, suspension), an
invoice that could not be made for retries an operator can see. The batch carries the search attribute
``TcloudAccounts`` (every account in it) and ``TcloudPeriod``, so "billing of acme for 2026-11" is one search in
the Temporal UI: ``TcloudAccounts = 'acme' AND TcloudPeriod = '2026-11'``; its ``status`` query answers each
account's state.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.billing import AccountOutcome, BillingActivities, InvoiceBatch
    from workflows.billing_invoice import STATUS_KEY, DunningPolicy, InvoiceInput, start_own_invoice_workflow

ACCOUNTS_KEY = SearchAttributeKey.for_keyword_list("TcloudAccounts")


def batch_workflow_id(period: str, first_account: str) -> str:
    return f"billing-batch/{period}/{first_account}"


@dataclass
class BatchInput:
    period: str
    account_ids: list[str]
    concurrency: int = 10
    dunning: DunningPolicy = field(default_factory=DunningPolicy)


@dataclass
class BatchStatus:
    """Each account's state: invoicing, then zero, paid, past_due (in dunning in its own workflow), failed
    (retried in its own workflow) or already_invoiced (its own workflow existed already)."""

    period: str
    states: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchDone:
    """Sent to the billing run when the batch is done with: how many accounts ended in each state."""

    batch_id: str
    counts: dict[str, int]


@workflow.defn(name="BillingBatch")
class BillingBatchWorkflow:
    def __init__(self) -> None:
        self._status = BatchStatus("", {})

    @workflow.query
    def status(self) -> BatchStatus:
        return self._status

    @workflow.run
    async def run(self, params: BatchInput) -> BatchStatus:
        self._status = BatchStatus(params.period, {a: "invoicing" for a in params.account_ids})
        made = await workflow.execute_activity_method(
            BillingActivities.make_invoices, InvoiceBatch(params.period, params.account_ids, params.concurrency),
            start_to_close_timeout=timedelta(minutes=15), heartbeat_timeout=timedelta(seconds=30))
        handed = await asyncio.gather(*(self._hand_over(a, params) for a in made.accounts
                                        if a.state in ("past_due", "failed")))
        for account in made.accounts:
            self._status.states[account.account_id] = account.state
            if account.error is not None:
                self._status.errors[account.account_id] = account.error
        for account_id, state in handed:
            self._status.states[account_id] = state
        workflow.upsert_search_attributes([STATUS_KEY.value_set("done")])
        await self._notify_run()
        return self._status

    async def _hand_over(self, account: AccountOutcome, params: BatchInput) -> tuple[str, str]:
        """Start the account's own invoice workflow: dunning for a failed payment (it starts from the invoice as
        made here), the whole invoice again for one that could not be made."""
        past_due = account.state == "past_due"
        started = await start_own_invoice_workflow(
            InvoiceInput(account.account_id, params.period, params.dunning, notify_parent=False,
                         made=account.outcome if past_due else None), status=account.state)
        if not started:
            return account.account_id, "already_invoiced"
        return account.account_id, account.state

    async def _notify_run(self) -> None:
        parent = workflow.info().parent
        if parent is None:
            return
        counts = dict(Counter(self._status.states.values()))
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                "batch_done", BatchDone(workflow.info().workflow_id, counts))
        except Exception:  # the run was terminated or reset: nothing waits for this batch any more
            workflow.logger.warning("billing run %s is gone; not notified", parent.workflow_id)
