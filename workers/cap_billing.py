"""Registration of the billing capability: its workflows, activities and the monthly Schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from activities.billing import BillingActivities, SpendAlertActivities
from activities.spend_alert_delivery import SpendAlertDeliveryActivities
from tcloud.platform.schedules import upsert_schedule
from tcloud.settings import Settings
from workers.capability import Clients, activity_methods
from workflows.billing import BillingMonthlyTick, BillingRunInput, BillingRunWorkflow
from workflows.billing_batch import BillingBatchWorkflow
from workflows.billing_invoice import DunningPolicy, InvoiceWorkflow
from workflows.spend_alerts import DeliveryPolicy, SpendAlertDeliveryWorkflow, SpendAlertsRun, SpendAlertsWorkflow

# 00:05 UTC on the 1st: the run then sleeps out the grace period and waits for a complete ledger.
MONTHLY_CRON = "5 0 1 * *"
ALERTS_CRON = "17 * * * *"


def schedule_id(settings: Settings) -> str:
    return f"{settings.schedule_prefix}billing-monthly"


def alerts_schedule_id(settings: Settings) -> str:
    return f"{settings.schedule_prefix}billing-spend-alerts"


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


def alerts_run_input(settings: Settings) -> SpendAlertsRun:
    """The spend-alert check's parameters from the settings (its delivery retry window)."""
    return SpendAlertsRun(delivery=DeliveryPolicy(deliver_for_seconds=settings.alert_delivery_hours * 3600))


def alerts_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SpendAlertsWorkflow.run, alerts_run_input(settings),
            id=f"{settings.schedule_prefix}billing-spend-alerts-check", task_queue=settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[ALERTS_CRON]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def workflows() -> list[type]:
    return [BillingMonthlyTick, BillingRunWorkflow, BillingBatchWorkflow, InvoiceWorkflow, SpendAlertsWorkflow,
            SpendAlertDeliveryWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    return activity_methods(BillingActivities(pool=c.pool, stripe_client=c.stripe), SpendAlertActivities(pool=c.pool),
                            SpendAlertDeliveryActivities(pool=c.pool, settings=c.settings))


async def ensure_schedules(c: Clients) -> None:
    """Create the monthly billing and hourly spend-alert Schedules, or bring them up to date (idempotent)."""
    for sid, schedule in ((schedule_id(c.settings), monthly_schedule(c.settings)),
                          (alerts_schedule_id(c.settings), alerts_schedule(c.settings))):
        await upsert_schedule(c.temporal, sid, schedule)
