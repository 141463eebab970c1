"""A whole month on the time-skipping test server: the monthly schedule's action fires at the month's end,
the run waits for the ledger to be complete, then invoices several accounts (real Postgres and localstripe).

The time-skipping server has no Schedules (CreateSchedule is unimplemented), so a stand-in workflow sleeps
until the cron's next firing and starts exactly the action ``workers.cap_billing.monthly_schedule`` holds.
The real Schedule is exercised on the dev server in ``test_billing_schedule.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import stripe
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tcloud.domain.billing_period import period_bounds, period_of
from tcloud.platform.clients import prometheus_client
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.billing_helpers import add_usage, complete_hours, make_account, stripe_invoices_for, wait_until
from workers import cap_billing
from workers.registry import Clients
from workflows.billing import BillingRunStatus, BillingRunWorkflow, billing_run_id


@workflow.defn(sandboxed=False)
class ScheduleStandIn:
    """Sleeps until ``fire_at``, then starts the schedule's action (workflow type and argument) as it would."""

    @workflow.run
    async def run(self, fire_at: datetime, workflow_type: str, arg: Any, child_id: str) -> str:
        await workflow.sleep(fire_at - workflow.now())
        return str(await workflow.execute_child_workflow(workflow_type, arg, id=child_id))


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    for name in ("TcloudAccount", "TcloudPeriod", "TcloudStatus"):
        try:
            await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))
        except RPCError:
            pass  # already registered by another test of this session


async def test_a_whole_month_schedule_fires_usage_completes_invoices_are_made(
        time_skipping_env: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient) -> None:
    env = time_skipping_env
    await _register_search_attributes(env)
    now = await env.get_current_time()
    period = period_of(now)
    start, end = period_bounds(period)
    mid_month = start + timedelta(days=10)
    accounts = {
        "payg": await make_account(pool, stripe_api, plan="payg"),
        "essentials": await make_account(pool, stripe_api, plan="essentials"),
        "late": await make_account(pool, stripe_api, plan="business", created_at=mid_month),
        "idle": await make_account(pool, stripe_api, plan="payg"),
    }
    await add_usage(pool, accounts["payg"].id, period, actions=11_250_000)
    await add_usage(pool, accounts["essentials"].id, period, actions=1_000_000, retained_byte_hours=10**12)
    await add_usage(pool, accounts["late"].id, period, actions=2_000_000)
    await complete_hours(pool, period, skip_last_hours=24)  # the last day is not collected yet

    queue = f"billing-month-{uuid.uuid4()}"
    month_settings = settings.model_copy(update={"task_queue": queue, "billing_grace_hours": 6})
    clients = Clients(settings=month_settings, pool=pool, temporal=env.client, stripe=stripe_api,
                      prometheus=prometheus_client(month_settings))
    action = cap_billing.monthly_schedule(month_settings).action
    assert isinstance(action, ScheduleActionStartWorkflow)
    fire_at = end + timedelta(minutes=5)  # cron "5 0 1 * *": 00:05 UTC on the 1st of the next month
    assert cap_billing.MONTHLY_CRON == "5 0 1 * *"
    async with Worker(env.client, task_queue=queue, workflows=[*cap_billing.workflows(), ScheduleStandIn],
                      activities=cap_billing.activities(clients)):
        await env.client.start_workflow(
            ScheduleStandIn.run, args=[fire_at, action.workflow, action.args[0], f"tick-{uuid.uuid4()}"],
            id=f"stand-in-{uuid.uuid4()}", task_queue=queue)
        # Past the month's end and the grace period: the run exists and waits for the ledger.
        await env.sleep(fire_at + timedelta(hours=8) - await env.get_current_time())
        run = env.client.get_workflow_handle_for(BillingRunWorkflow.run, billing_run_id(period))
        waiting: BillingRunStatus = await run.query(BillingRunWorkflow.status, rpc_timeout=timedelta(seconds=60))
        assert waiting.phase == "waiting_for_usage" and waiting.missing_hours == 48
        assert await pool.fetchval("SELECT count(*) FROM invoices") == 0

        await complete_hours(pool, period)  # usage collection catches up
        # Let time skip to the run's next poll, and wait (real time) until it has invoiced everybody.
        skipping = asyncio.create_task(env.sleep(timedelta(minutes=31)))

        async def run_completed() -> bool:
            return (await run.describe()).status == WorkflowExecutionStatus.COMPLETED

        try:
            await wait_until(run_completed, seconds=180, what="the billing run")
        finally:
            skipping.cancel()
        result = await run.result()
    assert result.phase == "done"
    assert result.counts == {"paid": 3, "zero": 1}
    assert await env.get_current_time() > datetime(end.year, end.month, end.day, tzinfo=UTC)

    totals = {name: await pool.fetchval("SELECT total_cents FROM invoices WHERE id = $1",
                                        invoice_id_for(a.id, period)) for name, a in accounts.items()}
    days = (end - start).days
    late_days = days - 10
    late_minimum = (500 * 100 * late_days + days // 2) // days  # $500 prorated, half up to cents
    assert totals["payg"] == 52_500 and totals["essentials"] == 10_000 and totals["idle"] == 0
    # Created on day 11: allocation and minimum prorated to the days it existed; its few actions beyond the
    # prorated allocation stay below the prorated $500 minimum, so it pays that minimum.
    assert totals["late"] == late_minimum
    for name in ("payg", "essentials", "late"):
        [inv] = await stripe_invoices_for(stripe_api, accounts[name].customer, invoice_id_for(accounts[name].id,
                                                                                             period))
        assert inv["total"] == totals[name] and inv["status"] == "paid"
