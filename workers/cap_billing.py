"""Registration of the billing capability: its workflows, activities and the monthly Schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from activities.billing import BillingActivities
from tcloud.settings import Settings
from workflows.billing import BillingMonthlyTick, BillingRunInput, BillingRunWorkflow
from workflows.billing_invoice import DunningPolicy, InvoiceWorkflow

if TYPE_CHECKING:
    from workers.registry import Clients

# 00:05 UTC on the 1st: the run then sleeps out the grace period and waits for a complete ledger.
MONTHLY_CRON = "5 0 1 * *"


def schedule_id(settings: Settings) -> str:
    return f"{settings.schedule_prefix}billing-monthly"


def run_input(settings: Settings, period: str = "") -> BillingRunInput:
    """The billing run's parameters from the settings (the Schedule and the operator API use this)."""
    return BillingRunInput(
        period=period, grace_hours=settings.billing_grace_hours, max_concurrent=settings.billing_max_concurrent,
        dunning=DunningPolicy(list(settings.billing_retry_after_hours), settings.billing_suspend_after_hours))


def monthly_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BillingMonthlyTick.run, run_input(settings), id=f"{settings.schedule_prefix}billing-monthly-tick",
            task_queue=settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[MONTHLY_CRON]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL),
    )


def workflows() -> list[type]:
    return [BillingMonthlyTick, BillingRunWorkflow, InvoiceWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    acts = BillingActivities(pool=c.pool, stripe_client=c.stripe)
    return [acts.check_period_complete, acts.list_accounts, acts.record_invoice, acts.send_invoice,
            acts.collect_payment, acts.suspend_account, acts.write_off]


async def ensure_schedules(c: Clients) -> None:
    """Create the monthly billing Schedule, or bring an existing one up to date (idempotent)."""
    schedule = monthly_schedule(c.settings)
    try:
        await c.temporal.create_schedule(schedule_id(c.settings), schedule)
    except ScheduleAlreadyRunningError:
        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await c.temporal.get_schedule_handle(schedule_id(c.settings)).update(update)
