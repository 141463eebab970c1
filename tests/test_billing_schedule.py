"""The real monthly Schedule on the dev server: created by the worker's start-up, it starts the billing run
of the month that closed, which invoices the accounts."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import asyncpg
import stripe
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecutionStatus

from tcloud.domain.billing_period import previous_period
from tcloud.platform.clients import prometheus_client
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.billing_helpers import add_usage, complete_hours, make_account, wait_until
from workers import cap_billing
from workers.registry import Clients
from workflows.billing import BillingRunWorkflow, billing_run_id


async def test_monthly_schedule_starts_the_run_of_the_closed_month(
        worker: None, settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client) -> None:
    period = previous_period(datetime.now(UTC))
    account = await make_account(pool, stripe_api, plan="essentials")
    await add_usage(pool, account.id, period, actions=3_000_000)
    await complete_hours(pool, period)
    scheduled = settings.model_copy(update={"schedules_enabled": True,
                                            "schedule_prefix": f"test{secrets.token_hex(3)}-"})
    clients = Clients(settings=scheduled, pool=pool, temporal=temporal_client, stripe=stripe_api,
                      prometheus=prometheus_client(scheduled))
    await cap_billing.ensure_schedules(clients)
    await cap_billing.ensure_schedules(clients)  # idempotent: the second start-up updates it
    handle = temporal_client.get_schedule_handle(cap_billing.schedule_id(scheduled))
    try:
        desc = await handle.describe()
        [cal] = desc.schedule.spec.calendars  # the server keeps the cron as a calendar: 00:05 UTC on the 1st
        assert (cal.minute[0].start, cal.hour[0].start, cal.day_of_month[0].start) == (5, 0, 1)
        assert (cal.day_of_month[0].end, cal.month[0].start, cal.month[0].end) == (1, 1, 12)
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "BillingMonthlyTick"
        assert action.task_queue == settings.task_queue
        await handle.trigger()  # what the cron does at 00:05 UTC on the 1st
        run = temporal_client.get_workflow_handle_for(BillingRunWorkflow.run, billing_run_id(period))

        async def run_completed() -> bool:
            try:
                return (await run.describe()).status == WorkflowExecutionStatus.COMPLETED
            except Exception:
                return False

        await wait_until(run_completed, seconds=120, what=f"billing-run/{period}")
        result = await run.result()
        assert result.counts == {"paid": 1}
        total = await pool.fetchval("SELECT total_cents FROM invoices WHERE id = $1",
                                    invoice_id_for(account.id, period))
        assert total == 10_000  # essentials: 2M beyond the 1M included at $50/M = $100 = the minimum
        alerts = await temporal_client.get_schedule_handle(cap_billing.alerts_schedule_id(scheduled)).describe()
        assert isinstance(alerts.schedule.action, ScheduleActionStartWorkflow)
    finally:
        await handle.delete()
        await temporal_client.get_schedule_handle(cap_billing.alerts_schedule_id(scheduled)).delete()
