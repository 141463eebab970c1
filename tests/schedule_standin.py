"""The monthly Schedule on the time-skipping test server, which has no Schedules (CreateSchedule is
unimplemented): a stand-in workflow sleeps until the cron's next firing and starts exactly the action
``workers.cap_billing.monthly_schedule`` holds. The real Schedule is exercised in ``test_billing_schedule.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import stripe
from temporalio import workflow
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tcloud.domain.billing_period import period_bounds
from tcloud.platform.clients import prometheus_client
from tcloud.platform.temporal import SEARCH_ATTRIBUTES
from tcloud.settings import Settings
from workers import cap_billing
from workers.registry import Clients


@workflow.defn(sandboxed=False)
class ScheduleStandIn:
    """Sleeps until ``fire_at``, then starts the schedule's action (workflow type and argument) as it would."""

    @workflow.run
    async def run(self, fire_at: datetime, workflow_type: str, arg: Any, child_id: str) -> str:
        await workflow.sleep(fire_at - workflow.now())
        return str(await workflow.execute_child_workflow(workflow_type, arg, id=child_id))


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    for name, kind in SEARCH_ATTRIBUTES.items():
        try:
            await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=env.client.namespace, search_attributes={name: kind}))
        except RPCError:
            pass  # already registered by another test of this session


def monthly_firing(period: str) -> datetime:
    """When the monthly cron ("5 0 1 * *", 00:05 UTC on the 1st) fires after ``period``."""
    assert cap_billing.MONTHLY_CRON == "5 0 1 * *"
    return period_bounds(period)[1] + timedelta(minutes=5)


@asynccontextmanager
async def monthly_schedule_on(env: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool,
                              stripe_api: stripe.StripeClient, period: str) -> AsyncIterator[None]:
    """The billing capability's real workflows and activities on a fresh task queue, with the monthly
    Schedule's action started when the cron fires after ``period`` (grace: 6 hours, the default)."""
    await register_search_attributes(env)
    queue = f"billing-month-{uuid.uuid4()}"
    month_settings = settings.model_copy(update={"task_queue": queue, "billing_grace_hours": 6})
    clients = Clients(settings=month_settings, pool=pool, temporal=env.client, stripe=stripe_api,
                      prometheus=prometheus_client(month_settings))
    action = cap_billing.monthly_schedule(month_settings).action
    assert isinstance(action, ScheduleActionStartWorkflow)
    async with Worker(env.client, task_queue=queue, workflows=[*cap_billing.workflows(), ScheduleStandIn],
                      activities=cap_billing.activities(clients)):
        await env.client.start_workflow(
            ScheduleStandIn.run, args=[monthly_firing(period), action.workflow, action.args[0],
                                       f"tick-{uuid.uuid4()}"],
            id=f"stand-in-{uuid.uuid4()}", task_queue=queue)
        yield
