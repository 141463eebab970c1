"""The platform is installed in the middle of a month (now, on the time-skipping server's clock) and metering
begins with the next hour: on the 1st, after the grace, the monthly Schedule's run bills that month without
waiting for the hours before the platform existed. This module's database is its own: its first collected hour
is the installation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import asyncpg
import stripe
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tcloud.domain.billing_period import hour_ceiling, hours_in_period, period_bounds, period_of
from tcloud.domain.metering import hours_between
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.billing_helpers import make_account, wait_until
from tests.schedule_standin import monthly_firing, monthly_schedule_on
from workflows.billing import BillingRunWorkflow, billing_run_id


async def test_the_month_the_platform_was_installed_in_bills_on_the_1st_after_grace(
        time_skipping_env: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient) -> None:
    env = time_skipping_env
    installed = hour_ceiling(await env.get_current_time())
    period = period_of(installed)
    _, end = period_bounds(period)
    if end - installed < timedelta(hours=2):  # installed in the month's last hour: the next month is the one
        installed, period = end, period_of(end)
        _, end = period_bounds(period)
    account = await make_account(pool, stripe_api, plan="payg", created_at=installed)
    ns = f"orders.{account.id}"
    await pool.execute("INSERT INTO namespace_ownership (namespace, account_id, valid_from) VALUES ($1, $2, $3)",
                       ns, account.id, installed)
    await pool.execute(
        """INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
           VALUES ($1, $2, 'actions', $3, $4, true)""", ns, installed + timedelta(hours=1), Decimal(2_000_000),
        account.id)
    # What hourly collection will have done by the 1st: every hour since installation, none before.
    await pool.executemany(
        "INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(c, h) for c in ("actions", "storage") for h in hours_between(installed, end)])
    assert len(hours_between(installed, end)) < hours_in_period(period)

    run = env.client.get_workflow_handle_for(BillingRunWorkflow.run, billing_run_id(period))
    async with monthly_schedule_on(env, settings, pool, stripe_api, period):
        await env.sleep(monthly_firing(period) - timedelta(minutes=10) - await env.get_current_time())
        try:
            await run.describe()
            raise AssertionError("the run started before the 1st")
        except RPCError:
            pass
        # Past the firing and the grace: the run finds the ledger complete from the installation on.
        skipping = asyncio.create_task(env.sleep(timedelta(hours=6, minutes=30)))

        async def run_completed() -> bool:
            try:
                return (await run.describe()).status == WorkflowExecutionStatus.COMPLETED
            except RPCError:
                return False

        try:
            await wait_until(run_completed, seconds=180, what=f"billing-run/{period}")
        finally:
            skipping.cancel()
        result = await run.result()
        started = (await run.describe()).start_time
    assert result.phase == "done" and result.counts == {"paid": 1}, result
    assert started >= end  # by the Schedule's action on the 1st
    invoice = await pool.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id_for(account.id, period))
    assert invoice["status"] == "paid" and invoice["total_cents"] == 10_000  # payg: 2M actions at $50 per million
