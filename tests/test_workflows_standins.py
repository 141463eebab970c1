"""The real workflows of every capability on the time-skipping test server, with stand-in activities.

Each stand-in is registered under the activity type name of the real activity (``tests.standin_support.standin``
refuses any other) and takes and returns the real activities' dataclasses, so what is tested is the workflow's
own logic: which activities it calls, in what order, with what, and what it does with their answers, including
over days of (skipped) time: retry schedules, dunning, delivery windows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.accounts import StripeCustomerInput, StripeCustomerOutput
from activities.backup import (
    BackupTargets,
    DumpInput,
    PruneInput,
    PruneResult,
    RecordInput,
    RestorePlan,
    RestoreRequest,
    RestoreResult,
)
from activities.billing import (
    AccountOutcome,
    AccountPage,
    AccountPageInput,
    AccountPeriod,
    BatchOutcome,
    Completeness,
    InvoiceBatch,
    InvoiceOutcome,
    InvoiceRef,
    InvoiceSummary,
    PaymentResult,
    PeriodInput,
    RunReport,
    SuspendInput,
    SuspendResult,
    WriteOffInput,
)
from activities.namespaces import (
    ActivateInput,
    FailInput,
    RegisterInput,
    RenameInput,
    RetentionInput,
    SearchAttributesInput,
)
from activities.spend_alert_delivery import DeliveryKey, DeliveryOutcome, FailDelivery
from activities.usage import CollectHourInput, CollectHourOutput, PendingHoursInput, PendingHoursOutput
from tcloud.adapters.backups import catalog, pgtools
from tcloud.domain.billing_period import hours_in_period, period_bounds, period_of
from tests.standin_support import (
    Calls,
    gaps_seconds,
    hours_after,
    register_search_attributes,
    standin,
    standin_worker,
    workflow_id,
)
from workflows.accounts import AccountSetupInput, AccountSetupOutput, AccountSetupWorkflow, account_setup_workflow_id
from workflows.backup import BackupInput, BackupWorkflow, RestoreWorkflow
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id
from workflows.billing_batch import BillingBatchWorkflow, batch_workflow_id
from workflows.billing_invoice import (
    InvoiceInput,
    InvoiceStatus,
    InvoiceWorkflow,
    WriteOffRequest,
    invoice_workflow_id,
)
from workflows.namespaces import (
    CreateNamespaceInput,
    CreateNamespaceWorkflow,
    NamespaceOperationOutput,
    UpdateNamespaceInput,
    UpdateNamespaceWorkflow,
    create_workflow_id,
    update_workflow_id,
)
from workflows.spend_alerts import DeliveryInput, DeliveryPolicy, SpendAlertDeliveryWorkflow, delivery_workflow_id
from workflows.usage import (
    UsageCollectHourWorkflow,
    UsageHourlyInput,
    UsageHourlyWorkflow,
    collect_workflow_id,
)

HOUR = timedelta(hours=1)


async def run(env: WorkflowEnvironment, queue: str, workflow_run: Any, arg: Any, *, id: str,
              within: timedelta = timedelta(days=1)) -> Any:
    """Execute to the end; the execution timeout (server time, skipped) turns a stuck workflow into a failure."""
    return await env.client.execute_workflow(workflow_run, arg, id=id, task_queue=queue, execution_timeout=within)


def failure_of(err: pytest.ExceptionInfo[WorkflowFailureError]) -> ApplicationError:
    """The ApplicationError a failed workflow failed with (directly, or as the cause of an activity's failure)."""
    cause: BaseException | None = err.value.cause
    while isinstance(cause, ActivityError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


def test_a_standin_must_use_a_real_activity_name() -> None:
    with pytest.raises(AssertionError, match="no real activity"):
        standin("billing.make_invoicez")
    standin("billing.make_invoice")
    standin("register_namespace")


# --- namespaces -----------------------------------------------------------------------------------------------

NS = "orders.acme"
REFUSAL = "the Temporal server refused the namespace: retention must be at least 1 day"


def namespace_standins(calls: Calls, register: Callable[[RegisterInput], bool] | None = None,
                       set_retention: Callable[[RetentionInput], None] | None = None,
                       add_attributes: Callable[[SearchAttributesInput], list[str]] | None = None
                       ) -> list[Callable[..., Any]]:
    """Every namespace activity, recording its argument; ``register`` / ``set_retention`` / ``add_attributes``
    answer (or raise)."""

    @standin("register_namespace")
    async def register_namespace(params: RegisterInput) -> bool:
        calls.record(params)
        return register(params) if register else True

    @standin("mark_namespace_active")
    async def mark_namespace_active(params: ActivateInput) -> None:
        calls.record(params)

    @standin("set_retention")
    async def set_retention_(params: RetentionInput) -> None:
        calls.record(params)
        if set_retention:
            set_retention(params)

    @standin("mark_namespace_updated")
    async def mark_namespace_updated(params: RetentionInput) -> None:
        calls.record(params)

    @standin("mark_namespace_failed")
    async def mark_namespace_failed(params: FailInput) -> None:
        calls.record(params)

    @standin("namespaces.add_search_attributes")
    async def add_search_attributes(params: SearchAttributesInput) -> list[str]:
        calls.record(params)
        return add_attributes(params) if add_attributes else sorted(params.attributes)

    @standin("namespaces.search_attribute_field")
    async def search_attribute_field(params: RenameInput) -> str:
        calls.record(params)
        return "Keyword01"

    @standin("namespaces.rename_search_attribute")
    async def rename_search_attribute(params: RenameInput) -> None:
        calls.record(params)

    return [register_namespace, mark_namespace_active, set_retention_, mark_namespace_updated, mark_namespace_failed,
            add_search_attributes, search_attribute_field, rename_search_attribute]


async def test_create_namespace_registers_then_marks_it_active(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    async with standin_worker(time_skipping_env, [CreateNamespaceWorkflow], namespace_standins(calls)) as queue:
        out = await run(time_skipping_env, queue, CreateNamespaceWorkflow.run,
                        CreateNamespaceInput(NS, "acme", 3, "ops@acme.test"), id=create_workflow_id(NS))
    assert out == NamespaceOperationOutput(NS, "active")
    assert calls.names() == ["register_namespace", "mark_namespace_active"]
    assert calls.args("register_namespace") == [RegisterInput(NS, "acme", 3, "ops@acme.test")]
    assert calls.args("mark_namespace_active") == [ActivateInput(NS, "acme")]


async def test_search_attributes_are_registered_before_the_namespace_is_recorded(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    wanted = {"CustomerId": "Keyword"}
    async with standin_worker(time_skipping_env, [CreateNamespaceWorkflow, UpdateNamespaceWorkflow],
                              namespace_standins(calls)) as queue:
        await run(time_skipping_env, queue, CreateNamespaceWorkflow.run,
                  CreateNamespaceInput(NS, "acme", 3, "ops@acme.test", wanted), id=create_workflow_id(NS))
        assert calls.names() == ["register_namespace", "namespaces.add_search_attributes", "mark_namespace_active"]
        assert calls.args("namespaces.add_search_attributes") == [SearchAttributesInput(NS, wanted)]
        both = {**wanted, "Amount": "Double"}
        await run(time_skipping_env, queue, UpdateNamespaceWorkflow.run, UpdateNamespaceInput(NS, 3, 2, both),
                  id=update_workflow_id(NS, 2))
    assert calls.names()[3:] == ["set_retention", "namespaces.add_search_attributes", "mark_namespace_updated"]
    assert calls.args("mark_namespace_updated") == [RetentionInput(NS, 3, both)]


async def test_a_rename_renames_the_field_it_finds_and_adds_nothing(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    after = {"ClientId": "Keyword"}
    async with standin_worker(time_skipping_env, [UpdateNamespaceWorkflow], namespace_standins(calls)) as queue:
        await run(time_skipping_env, queue, UpdateNamespaceWorkflow.run,
                  UpdateNamespaceInput(NS, 3, 7, after, renamed=["CustomerId", "ClientId"]),
                  id=update_workflow_id(NS, 7))
    assert calls.names() == ["set_retention", "namespaces.search_attribute_field",
                             "namespaces.rename_search_attribute", "mark_namespace_updated"]
    assert calls.args("namespaces.rename_search_attribute") == [RenameInput(NS, "CustomerId", "ClientId", "Keyword01")]
    assert calls.args("mark_namespace_updated") == [RetentionInput(NS, 3, after)]


async def test_refused_search_attributes_leave_the_namespace_as_it_was(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def refuse(params: SearchAttributesInput) -> list[str]:
        raise ApplicationError("too many Keyword attributes", non_retryable=True)

    async with standin_worker(time_skipping_env, [UpdateNamespaceWorkflow],
                              namespace_standins(calls, add_attributes=refuse)) as queue:
        with pytest.raises(WorkflowFailureError):
            await run(time_skipping_env, queue, UpdateNamespaceWorkflow.run,
                      UpdateNamespaceInput(NS, 3, 5, {"A": "Keyword"}), id=update_workflow_id(NS, 5))
    # Never recorded: back to 'active' with the attributes it had.
    assert calls.names() == ["set_retention", "namespaces.add_search_attributes", "mark_namespace_failed"]
    assert calls.args("mark_namespace_failed") == [FailInput(NS, "active", "too many Keyword attributes")]


async def test_create_namespace_retries_a_server_hiccup(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def flaky(params: RegisterInput) -> bool:
        if len(calls.named("register_namespace")) < 3:
            raise RuntimeError("frontend unavailable")
        return True

    async with standin_worker(time_skipping_env, [CreateNamespaceWorkflow],
                              namespace_standins(calls, register=flaky)) as queue:
        out = await run(time_skipping_env, queue, CreateNamespaceWorkflow.run,
                        CreateNamespaceInput(NS, "acme", 3, "ops@acme.test"), id=create_workflow_id(NS))
    assert out.state == "active"
    assert [c.attempt for c in calls.named("register_namespace")] == [1, 2, 3]
    assert calls.names()[-1] == "mark_namespace_active" and not calls.named("mark_namespace_failed")


async def test_a_server_refusal_marks_the_namespace_failed(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def refuse(params: RegisterInput) -> bool:
        raise ApplicationError(REFUSAL, non_retryable=True)

    async with standin_worker(time_skipping_env, [CreateNamespaceWorkflow],
                              namespace_standins(calls, register=refuse)) as queue:
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, CreateNamespaceWorkflow.run,
                      CreateNamespaceInput(NS, "acme", 0, "ops@acme.test"), id=create_workflow_id(NS))
    assert failure_of(failed).message == REFUSAL and failure_of(failed).non_retryable
    # Refused once (not retried), then the row is put in 'failed' with the server's reason; never marked active.
    assert calls.names() == ["register_namespace", "mark_namespace_failed"]
    assert calls.args("mark_namespace_failed") == [FailInput(NS, "failed", REFUSAL)]


async def test_a_refused_update_puts_the_namespace_back_to_active(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def refuse(params: RetentionInput) -> None:
        raise ApplicationError("retention above the server's maximum", non_retryable=True)

    async with standin_worker(time_skipping_env, [UpdateNamespaceWorkflow],
                              namespace_standins(calls, set_retention=refuse)) as queue:
        with pytest.raises(WorkflowFailureError):
            await run(time_skipping_env, queue, UpdateNamespaceWorkflow.run, UpdateNamespaceInput(NS, 9999, 4),
                      id=update_workflow_id(NS, 4))
    assert calls.names() == ["set_retention", "mark_namespace_failed"]
    # The namespace still exists, unchanged: back to 'active', not 'failed'.
    assert calls.args("mark_namespace_failed") == [FailInput(NS, "active", "retention above the server's maximum")]


# --- accounts -------------------------------------------------------------------------------------------------


async def test_account_setup_retries_until_stripe_answers(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    @standin("ensure_stripe_customer")
    async def ensure_stripe_customer(params: StripeCustomerInput) -> StripeCustomerOutput:
        if calls.record(params).attempt < 3:
            raise RuntimeError("Stripe answered 503")
        return StripeCustomerOutput("cus_standin", created=True)

    async with standin_worker(time_skipping_env, [AccountSetupWorkflow], [ensure_stripe_customer]) as queue:
        out = await run(time_skipping_env, queue, AccountSetupWorkflow.run, AccountSetupInput("acme"),
                        id=account_setup_workflow_id("acme"))
    assert out == AccountSetupOutput("cus_standin")
    assert [c.attempt for c in calls.log] == [1, 2, 3]
    assert calls.args("ensure_stripe_customer") == [StripeCustomerInput("acme")] * 3


async def test_account_setup_fails_once_for_a_missing_account(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    @standin("ensure_stripe_customer")
    async def ensure_stripe_customer(params: StripeCustomerInput) -> StripeCustomerOutput:
        calls.record(params)
        raise ApplicationError(f"account {params.account_id} does not exist", non_retryable=True)

    async with standin_worker(time_skipping_env, [AccountSetupWorkflow], [ensure_stripe_customer]) as queue:
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, AccountSetupWorkflow.run, AccountSetupInput("ghost"),
                      id=account_setup_workflow_id("ghost"))
    assert failure_of(failed).message == "account ghost does not exist"
    assert len(calls.log) == 1


# --- usage ----------------------------------------------------------------------------------------------------

THROUGH = datetime(2026, 11, 25, 14, tzinfo=UTC)


def usage_standins(calls: Calls, owed: dict[str, list[datetime]]) -> list[Callable[..., Any]]:
    """``pending_hours`` answers from ``owed`` minus what the collect stand-ins already collected."""
    collected: set[tuple[str, datetime]] = set()

    @standin("pending_hours")
    async def pending_hours(params: PendingHoursInput) -> PendingHoursOutput:
        calls.record(params)
        left = [h for h in owed.get(params.collector, []) if (params.collector, h) not in collected
                and h < params.through]
        return PendingHoursOutput(left[:params.max_hours], more=len(left) > params.max_hours)

    def collect(collector: str, params: CollectHourInput) -> CollectHourOutput:
        calls.record(params)
        written = (collector, params.hour) not in collected
        collected.add((collector, params.hour))
        return CollectHourOutput(collector, params.hour, written)

    @standin("collect_actions_hour")
    async def collect_actions_hour(params: CollectHourInput) -> CollectHourOutput:
        return collect("actions", params)

    @standin("collect_storage_hour")
    async def collect_storage_hour(params: CollectHourInput) -> CollectHourOutput:
        return collect("storage", params)

    return [pending_hours, collect_actions_hour, collect_storage_hour]


async def test_hourly_usage_collects_every_pending_hour_once(time_skipping_env: WorkflowEnvironment) -> None:
    """Five hours owed by ``actions`` (an outage), one by ``storage``; two per run, so it continues as new."""
    calls = Calls()
    owed = {"actions": [THROUGH - n * HOUR for n in range(5, 0, -1)], "storage": [THROUGH - HOUR]}
    async with standin_worker(time_skipping_env, [UsageHourlyWorkflow, UsageCollectHourWorkflow],
                              usage_standins(calls, owed)) as queue:
        out = await run(time_skipping_env, queue, UsageHourlyWorkflow.run,
                        UsageHourlyInput(through=THROUGH, max_hours=2), id=workflow_id("usage/hourly"))

    for collector, activity_type in (("actions", "collect_actions_hour"), ("storage", "collect_storage_hour")):
        done = calls.named(activity_type)
        # Every owed hour once, oldest first, each in its own usage/<collector>/<hour> child.
        assert [c.arg.hour for c in done] == owed[collector]
        assert [c.workflow_id for c in done] == [collect_workflow_id(collector, h) for h in owed[collector]]
        assert all(c.arg.collector == collector and not c.arg.provisional for c in done)
    # Three runs (2 + 2 + 1 actions hours), each asking both collectors what they owe before ``through``.
    asked = calls.args("pending_hours")
    assert len(asked) == 6 and {(a.through, a.max_hours) for a in asked} == {(THROUGH, 2)}
    # The last run reports what it collected itself.
    assert out.collected == {"actions": [THROUGH - HOUR]} and out.skipped == {}


async def test_one_hour_goes_to_its_collector_and_an_unknown_one_is_refused(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    hour = THROUGH - HOUR
    async with standin_worker(time_skipping_env, [UsageCollectHourWorkflow], usage_standins(calls, {})) as queue:
        out = await run(time_skipping_env, queue, UsageCollectHourWorkflow.run, CollectHourInput("storage", hour),
                        id=collect_workflow_id("storage", hour))
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, UsageCollectHourWorkflow.run, CollectHourInput("cpu", hour),
                      id=collect_workflow_id("cpu", hour))
    assert out == CollectHourOutput("storage", hour, written=True)
    assert calls.names() == ["collect_storage_hour"]
    assert failure_of(failed).message == "unknown collector 'cpu'"


# --- billing: invoices and the monthly run ---------------------------------------------------------------------

PERIOD = "2026-10"
INVOICE = "inv-acme-2026-10"
DECLINED = "Your card was declined."


def invoice_standins(calls: Calls, *, first: PaymentResult | None,
                     collect: Callable[[int], PaymentResult] | None = None) -> list[Callable[..., Any]]:
    """``make_invoice`` answers an open invoice of $123.45 and ``first`` as its payment; ``collect(n)`` answers
    the n-th ``collect_payment``."""

    @standin("billing.make_invoice")
    async def make_invoice(params: AccountPeriod) -> InvoiceOutcome:
        calls.record(params)
        summary = InvoiceSummary(f"inv-{params.account_id}-{params.period}", params.account_id, params.period,
                                 "open", 12_345)
        return InvoiceOutcome(summary, first)

    @standin("billing.collect_payment")
    async def collect_payment(params: InvoiceRef) -> PaymentResult:
        calls.record(params)
        assert collect is not None, "no payment retry expected"
        return collect(len(calls.named("billing.collect_payment")))

    @standin("billing.suspend_account")
    async def suspend_account(params: SuspendInput) -> SuspendResult:
        calls.record(params)
        return SuspendResult(suspended=True)

    @standin("billing.write_off")
    async def write_off(params: WriteOffInput) -> InvoiceSummary:
        calls.record(params)
        return InvoiceSummary(params.invoice_id, "acme", PERIOD, "written_off", 12_345)

    return [make_invoice, collect_payment, suspend_account, write_off]


async def test_a_failed_payment_is_retried_on_the_dunning_schedule_then_the_account_suspended(
        time_skipping_env: WorkflowEnvironment) -> None:
    """Default policy: retries 72, 120, 168 and 336 hours after the failure, suspension at 240 hours; the fourth
    retry is paid and lifts the suspension. Two weeks of workflow time pass in well under a second."""
    await register_search_attributes(time_skipping_env)
    calls = Calls()

    def collect(n: int) -> PaymentResult:
        if n < 4:
            return PaymentResult(False, "past_due", n + 1, DECLINED)
        return PaymentResult(True, "paid", n + 1, resumed_account=True)

    standins = invoice_standins(calls, first=PaymentResult(False, "past_due", 1, DECLINED), collect=collect)
    async with standin_worker(time_skipping_env, [InvoiceWorkflow], standins) as queue:
        out = await run(time_skipping_env, queue, InvoiceWorkflow.run,
                        InvoiceInput("acme", PERIOD, notify_parent=False), id=invoice_workflow_id("acme", PERIOD),
                        within=timedelta(days=60))

    failed_at = calls.named("billing.make_invoice")[0].started
    assert hours_after(failed_at, calls.named("billing.collect_payment")) == [72, 120, 168, 336]
    assert hours_after(failed_at, calls.named("billing.suspend_account")) == [240]
    assert calls.names() == ["billing.make_invoice"] + ["billing.collect_payment"] * 3 + [
        "billing.suspend_account", "billing.collect_payment"]
    assert calls.args("billing.collect_payment") == [InvoiceRef(INVOICE)] * 4
    assert calls.args("billing.suspend_account") == [SuspendInput(INVOICE, "unpaid 240h after failure")]
    assert out == InvoiceStatus("acme", PERIOD, state="paid", invoice_id=INVOICE, total_cents=12_345,
                                payment_attempts=5, suspended=False, last_error=None)


async def test_an_operator_write_off_ends_dunning_without_retrying(time_skipping_env: WorkflowEnvironment) -> None:
    await register_search_attributes(time_skipping_env)
    calls = Calls()
    standins = invoice_standins(calls, first=PaymentResult(False, "past_due", 1, DECLINED))
    async with standin_worker(time_skipping_env, [InvoiceWorkflow], standins) as queue:
        handle = await time_skipping_env.client.start_workflow(
            InvoiceWorkflow.run, InvoiceInput("acme", PERIOD, notify_parent=False),
            id=invoice_workflow_id("acme", PERIOD), task_queue=queue, execution_timeout=timedelta(days=60))
        await handle.signal(InvoiceWorkflow.write_off, WriteOffRequest("goodwill"))
        out = await handle.result()
    assert calls.names() == ["billing.make_invoice", "billing.write_off"]
    assert calls.args("billing.write_off") == [WriteOffInput(INVOICE, "goodwill")]
    assert out.state == "written_off" and not out.suspended and out.payment_attempts == 1


async def test_the_billing_run_waits_for_the_ledger_then_invoices_every_account_once(
        time_skipping_env: WorkflowEnvironment) -> None:
    """The month in progress: the run sleeps to its end plus the grace hours, polls the ledger until complete,
    then invoices the accounts in batches of two, one batch at a time, continuing as new every two pages; an
    account whose payment fails is handed to its own invoice workflow for dunning, starting from the invoice the
    batch made."""
    await register_search_attributes(time_skipping_env)
    calls = Calls()
    period = period_of(datetime.now(UTC))
    accounts = ["acme", "beta", "delta", "gamma", "omega"]

    @standin("billing.check_period_complete")
    async def check_period_complete(params: PeriodInput) -> Completeness:
        calls.record(params)
        missing = 0 if len(calls.named("billing.check_period_complete")) >= 3 else 7
        return Completeness(params.period, 2 * hours_in_period(params.period), missing)

    @standin("billing.list_accounts")
    async def list_accounts(params: AccountPageInput) -> AccountPage:
        calls.record(params)
        return AccountPage([a for a in accounts if a > params.after][:params.limit])

    def made(account_id: str) -> InvoiceOutcome:
        summary = InvoiceSummary(f"inv-{account_id}", account_id, period, "open", 500)
        if account_id == "gamma":
            return InvoiceOutcome(summary, PaymentResult(False, "past_due", 1, "card declined"))
        return InvoiceOutcome(summary, PaymentResult(True, "paid", 1))

    @standin("billing.make_invoices")
    async def make_invoices(params: InvoiceBatch) -> BatchOutcome:
        calls.record(params)
        return BatchOutcome([AccountOutcome(a, made(a)) for a in params.account_ids])

    @standin("billing.make_invoice")
    async def make_invoice(params: AccountPeriod) -> InvoiceOutcome:
        calls.record(params)
        return made(params.account_id)

    @standin("billing.report_run")
    async def report_run(params: RunReport) -> None:
        calls.record(params)

    standins: list[Callable[..., Any]] = [check_period_complete, list_accounts, make_invoices, make_invoice,
                                          report_run]
    async with standin_worker(time_skipping_env, [BillingRunWorkflow, BillingBatchWorkflow, InvoiceWorkflow],
                              standins) as queue:
        out = await run(time_skipping_env, queue, BillingRunWorkflow.run,
                        BillingRunInput(period=period, grace_hours=6, poll_minutes=30, max_concurrent=2, page_size=2,
                                        accounts_per_run=2, batch_size=2, batch_concurrency=2),
                        id=billing_run_id(period), within=timedelta(days=40))
        gamma = time_skipping_env.client.get_workflow_handle_for(InvoiceWorkflow.run,
                                                                 invoice_workflow_id("gamma", period))
        dunning = await gamma.query(InvoiceWorkflow.status)

    _, end = period_bounds(period)
    checks = calls.named("billing.check_period_complete")
    assert checks[0].started >= end + timedelta(hours=6)
    assert hours_after(checks[0].started, checks) == [0, 0.5, 1]
    assert calls.args("billing.check_period_complete") == [PeriodInput(period)] * 3
    batches = calls.named("billing.make_invoices")
    assert [c.arg.account_ids for c in batches] == [["acme", "beta"], ["delta", "gamma"], ["omega"]]
    assert [c.workflow_id for c in batches] == [batch_workflow_id(period, c.arg.account_ids[0]) for c in batches]
    assert all(c.started > checks[-1].started for c in batches)
    # Pages of two, resumed after continue-as-new from the last account started.
    assert [a.after for a in calls.args("billing.list_accounts")] == ["", "beta", "gamma"]
    assert out.phase == "done" and out.counts == {"paid": 4, "past_due": 1} and out.in_flight == 0
    # Only gamma got a workflow of its own, in dunning from the invoice the batch made (not made again).
    assert calls.args("billing.make_invoice") == []
    assert (dunning.state, dunning.invoice_id, dunning.payment_attempts) == ("past_due", "inv-gamma", 1)
    # What the run wrote to billing_runs as it went: each phase, the ledger's gap, each continue-as-new, its end.
    reports = [(r.status, r.phase, r.missing_hours) for r in calls.args("billing.report_run")]
    assert reports[:3] == [("running", "waiting_for_period_end", -1), ("running", "waiting_for_usage", 7),
                           ("running", "waiting_for_usage", 0)]
    assert reports[-2:] == [("running", "draining", 0), ("completed", "done", 0)]
    assert calls.args("billing.report_run")[-1].counts == {"paid": 4, "past_due": 1}


# --- spend alerts ---------------------------------------------------------------------------------------------

KEY = DeliveryKey("acme", PERIOD, 50_000, "webhook")
WINDOW = DeliveryPolicy(deliver_for_seconds=6 * 3600, first_retry_seconds=30, max_retry_seconds=3600)


def delivery_standins(calls: Calls, deliver: Callable[[int], DeliveryOutcome]) -> list[Callable[..., Any]]:
    @standin("billing.deliver_spend_alert")
    async def deliver_spend_alert(key: DeliveryKey) -> DeliveryOutcome:
        return deliver(calls.record(key).attempt)

    @standin("billing.fail_spend_alert_delivery")
    async def fail_spend_alert_delivery(params: FailDelivery) -> DeliveryOutcome:
        calls.record(params)
        return DeliveryOutcome("failed", len(calls.named("billing.deliver_spend_alert")), params.reason)

    return [deliver_spend_alert, fail_spend_alert_delivery]


async def test_an_alert_delivery_retries_then_is_marked_failed_after_its_window(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def down(attempt: int) -> DeliveryOutcome:
        raise ApplicationError("https://hooks.acme.test/spend answered 503", type="DeliveryFailed")

    async with standin_worker(time_skipping_env, [SpendAlertDeliveryWorkflow], delivery_standins(calls, down)) as q:
        out = await run(time_skipping_env, q, SpendAlertDeliveryWorkflow.run, DeliveryInput(KEY, WINDOW),
                        id=delivery_workflow_id(KEY))

    tries = calls.named("billing.deliver_spend_alert")
    assert [c.arg for c in tries] == [KEY] * len(tries)
    assert [c.attempt for c in tries] == list(range(1, len(tries) + 1))
    # Exponential backoff from 30 s, doubling, capped at an hour; no attempt after the six-hour window.
    assert gaps_seconds(tries) == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    assert tries[-1].started - tries[0].started < timedelta(seconds=WINDOW.deliver_for_seconds)
    # Then given up once, recorded with the reason.
    [failed] = calls.named("billing.fail_spend_alert_delivery")
    assert calls.names()[-1] == "billing.fail_spend_alert_delivery" and failed.arg.key == KEY
    assert "answered 503" in failed.arg.reason, failed.arg.reason
    assert out == DeliveryOutcome("failed", len(tries), failed.arg.reason)


async def test_a_refused_target_is_marked_failed_without_retrying(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def refused(attempt: int) -> DeliveryOutcome:
        raise ApplicationError("the account removed its webhook", type="TargetRefused", non_retryable=True)

    async with standin_worker(time_skipping_env, [SpendAlertDeliveryWorkflow],
                              delivery_standins(calls, refused)) as q:
        out = await run(time_skipping_env, q, SpendAlertDeliveryWorkflow.run, DeliveryInput(KEY, WINDOW),
                        id=delivery_workflow_id(KEY))
    assert calls.names() == ["billing.deliver_spend_alert", "billing.fail_spend_alert_delivery"]
    assert out.state == "failed" and "removed its webhook" in out.detail


async def test_an_alert_delivered_on_the_third_try_is_not_marked_failed(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()

    def third_time(attempt: int) -> DeliveryOutcome:
        if attempt < 3:
            raise ApplicationError("answered 503", type="DeliveryFailed")
        return DeliveryOutcome("delivered", attempt, "answered 200")

    async with standin_worker(time_skipping_env, [SpendAlertDeliveryWorkflow],
                              delivery_standins(calls, third_time)) as q:
        out = await run(time_skipping_env, q, SpendAlertDeliveryWorkflow.run, DeliveryInput(KEY, WINDOW),
                        id=delivery_workflow_id(KEY))
    assert out == DeliveryOutcome("delivered", 3, "answered 200")
    assert calls.names() == ["billing.deliver_spend_alert"] * 3


# --- backups --------------------------------------------------------------------------------------------------

BACKUP_ID = "20261125T030000Z"
SHA = "ab" * 32


def backup_standins(calls: Calls, databases: list[str],
                    dump_fails: Callable[[DumpInput, int], bool] = lambda params, attempt: False,
                    ) -> list[Callable[..., Any]]:
    @standin("backup_targets")
    async def backup_targets() -> BackupTargets:
        calls.record()
        return BackupTargets(list(databases))

    @standin("dump_database")
    async def dump_database(params: DumpInput) -> catalog.DumpEntry:
        if dump_fails(params, calls.record(params).attempt):
            raise ApplicationError("pg_dump exited with 1: connection refused", type="DumpFailed")
        return catalog.DumpEntry(database=params.database, key=catalog.dump_key(params.backup_id, params.database),
                                 size=1000 + len(params.database), sha256=SHA)

    @standin("record_backup")
    async def record_backup(params: RecordInput) -> catalog.Manifest:
        calls.record(params)
        return catalog.Manifest(backup_id=params.backup_id, created_at=params.created_at,
                                finished_at=params.created_at + timedelta(minutes=5), store="standin",
                                workflow_id=params.workflow_id, dumps=params.dumps)

    @standin("prune_backups")
    async def prune_backups(params: PruneInput) -> PruneResult:
        calls.record(params)
        return PruneResult(deleted=["20261101T030000Z"], kept=[BACKUP_ID])

    return [backup_targets, dump_database, record_backup, prune_backups]


async def test_a_backup_dumps_each_target_then_records_it(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    databases = ["platform", "temporal", "temporal_visibility"]
    wid = workflow_id("backup/2026-11-25")
    async with standin_worker(time_skipping_env, [BackupWorkflow], backup_standins(calls, databases)) as queue:
        out = await run(time_skipping_env, queue, BackupWorkflow.run, BackupInput(BACKUP_ID, keep_days=3), id=wid)

    assert calls.names() == ["backup_targets", "dump_database", "dump_database", "dump_database", "record_backup",
                             "prune_backups"]
    [recorded] = calls.args("record_backup")
    # One dump per target, in order, all of the same backup and moment; the record lists exactly those dumps.
    assert calls.args("dump_database") == [DumpInput(BACKUP_ID, db, recorded.created_at) for db in databases]
    assert recorded.backup_id == BACKUP_ID and recorded.workflow_id == wid
    assert [(d.database, d.key) for d in recorded.dumps] == [
        (db, f"backups/{BACKUP_ID}/{db}.pgdump") for db in databases]
    assert calls.args("prune_backups") == [PruneInput(keep_days=3)]
    assert out.manifest.dumps == recorded.dumps and out.manifest.workflow_id == wid
    assert out.pruned == PruneResult(deleted=["20261101T030000Z"], kept=[BACKUP_ID])


async def test_a_dump_that_keeps_failing_leaves_the_backup_unrecorded(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    standins = backup_standins(calls, ["platform", "temporal"],
                               dump_fails=lambda params, attempt: params.database == "temporal")
    async with standin_worker(time_skipping_env, [BackupWorkflow], standins) as queue:
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, BackupWorkflow.run, BackupInput(BACKUP_ID), id=workflow_id("backup"))
    assert "pg_dump exited with 1" in failure_of(failed).message
    temporal_dumps = [c for c in calls.named("dump_database") if c.arg.database == "temporal"]
    # Five attempts, ten seconds apart and doubling; the backup is never recorded nor pruned.
    assert [c.attempt for c in temporal_dumps] == [1, 2, 3, 4, 5]
    assert gaps_seconds(temporal_dumps) == [10, 20, 40, 80]
    assert "record_backup" not in calls.names() and "prune_backups" not in calls.names()


async def test_a_backup_id_that_is_not_a_timestamp_is_refused_before_any_dump(
        time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    async with standin_worker(time_skipping_env, [BackupWorkflow], backup_standins(calls, ["platform"])) as queue:
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, BackupWorkflow.run, BackupInput("../../etc"), id=workflow_id("backup"))
    assert "invalid backup id" in failure_of(failed).message
    assert calls.log == []


async def test_a_restore_refuses_a_non_empty_target_unless_forced(time_skipping_env: WorkflowEnvironment) -> None:
    calls = Calls()
    dump = catalog.DumpEntry(database="platform", key=catalog.dump_key(BACKUP_ID, "platform"), size=10, sha256=SHA)

    @standin("inspect_restore")
    async def inspect_restore(params: RestoreRequest) -> RestorePlan:
        calls.record(params)
        return RestorePlan(params.backup_id, params.database, "db.internal/platform", dump,
                           overwrites=[pgtools.TableRows("accounts", 12)])

    @standin("restore_database")
    async def restore_database(plan: RestorePlan) -> RestoreResult:
        calls.record(plan)
        return RestoreResult(plan.backup_id, plan.database, plan.target, plan.dump.size)

    async with standin_worker(time_skipping_env, [RestoreWorkflow], [inspect_restore, restore_database]) as queue:
        with pytest.raises(WorkflowFailureError) as failed:
            await run(time_skipping_env, queue, RestoreWorkflow.run, RestoreRequest(BACKUP_ID),
                      id=f"restore/{BACKUP_ID}")
        refused = calls.names()
        forced = await run(time_skipping_env, queue, RestoreWorkflow.run, RestoreRequest(BACKUP_ID, force=True),
                           id=f"restore/{BACKUP_ID}/forced")
    assert failure_of(failed).type == "TargetNotEmpty" and "accounts (12 rows)" in failure_of(failed).message
    assert refused == ["inspect_restore"]
    assert calls.names() == ["inspect_restore", "inspect_restore", "restore_database"]
    assert forced == RestoreResult(BACKUP_ID, "platform", "db.internal/platform", 10)
