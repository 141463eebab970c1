"""Spend alerts: the hourly check started by the Schedule ``<prefix>billing-spend-alerts``, and one
``spend-alert/<account>/<YYYY-MM>/<threshold cents>/<channel>`` workflow per delivery.

The check records each reached threshold once with its pending deliveries (Postgres is the guard), then
starts a delivery workflow for every pending one not dispatched yet, including those an earlier check
recorded but did not get to dispatch. The dispatch is recorded by the activity whose result is in this
workflow's history, so the starts that follow happen even across a worker crash; a delivery workflow
already running or done refuses a duplicate start, so each is sent by one workflow. It retries on Temporal's
schedule for ``deliver_for_seconds``, then records the failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.billing import SpendAlertActivities, SpendAlertsInput, SpendAlertsResult
    from activities.spend_alert_delivery import (
        DeliveryKey,
        DeliveryOutcome,
        FailDelivery,
        PendingDeliveries,
        PendingInput,
        SpendAlertDeliveryActivities,
    )
    from tcloud.domain.billing_period import period_of
    from workflows.billing_invoice import ACCOUNT_KEY, PERIOD_KEY


def delivery_workflow_id(key: DeliveryKey) -> str:
    return f"spend-alert/{key.account_id}/{key.period}/{key.threshold_cents}/{key.channel}"


@dataclass
class DeliveryPolicy:
    deliver_for_seconds: float = 72 * 3600
    first_retry_seconds: float = 30
    max_retry_seconds: float = 3600


@dataclass
class SpendAlertsRun:
    period: str = ""  # empty: the month in progress
    delivery: DeliveryPolicy = dataclasses.field(default_factory=DeliveryPolicy)


@dataclass
class DeliveryInput:
    key: DeliveryKey
    policy: DeliveryPolicy = dataclasses.field(default_factory=DeliveryPolicy)


@workflow.defn(name="BillingSpendAlerts")
class SpendAlertsWorkflow:
    @workflow.run
    async def run(self, params: SpendAlertsRun) -> SpendAlertsResult:
        now = workflow.now()
        result = await workflow.execute_activity_method(
            SpendAlertActivities.check_spend_alerts, SpendAlertsInput(params.period or period_of(now), now),
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2))
        pending: PendingDeliveries = await workflow.execute_activity_method(
            SpendAlertDeliveryActivities.dispatch_deliveries,
            PendingInput(redispatch_after_seconds=params.delivery.deliver_for_seconds + 3600),
            start_to_close_timeout=timedelta(seconds=60))
        started = await asyncio.gather(*(self._start_delivery(key, params.delivery) for key in pending.deliveries))
        return dataclasses.replace(result, deliveries_started=sum(started))

    async def _start_delivery(self, key: DeliveryKey, policy: DeliveryPolicy) -> bool:
        try:
            await workflow.start_child_workflow(
                SpendAlertDeliveryWorkflow.run, DeliveryInput(key, policy), id=delivery_workflow_id(key),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # Only a delivery workflow that was terminated or timed out may run again.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                search_attributes=TypedSearchAttributes([SearchAttributePair(ACCOUNT_KEY, key.account_id),
                                                         SearchAttributePair(PERIOD_KEY, key.period)]))
        except WorkflowAlreadyStartedError:
            return False
        return True


@workflow.defn(name="SpendAlertDelivery")
class SpendAlertDeliveryWorkflow:
    @workflow.run
    async def run(self, params: DeliveryInput) -> DeliveryOutcome:
        policy = params.policy
        try:
            return await workflow.execute_activity_method(
                SpendAlertDeliveryActivities.deliver, params.key,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=policy.deliver_for_seconds),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=policy.first_retry_seconds),
                                         backoff_coefficient=2.0,
                                         maximum_interval=timedelta(seconds=policy.max_retry_seconds),
                                         non_retryable_error_types=["TargetRefused", "UnknownDelivery"]))
        except ActivityError as err:
            reason = str(err.cause) if err.cause is not None else str(err)
            return await workflow.execute_activity_method(
                SpendAlertDeliveryActivities.mark_failed, FailDelivery(params.key, reason),
                start_to_close_timeout=timedelta(seconds=30))
