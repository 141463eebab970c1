"""The hourly spend-alert check, started by the Schedule ``<prefix>billing-spend-alerts``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.billing import SpendAlertActivities, SpendAlertsInput, SpendAlertsResult
    from tcloud.billing_period import period_of


@dataclass
class SpendAlertsRun:
    period: str = ""  # empty: the month in progress


@workflow.defn(name="BillingSpendAlerts")
class SpendAlertsWorkflow:
    @workflow.run
    async def run(self, params: SpendAlertsRun) -> SpendAlertsResult:
        now = workflow.now()
        return await workflow.execute_activity_method(
            SpendAlertActivities.check_spend_alerts, SpendAlertsInput(params.period or period_of(now), now),
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2))
