"""A whole month on the time-skipping test server: the monthly schedule's action fires at the month's end,
the run waits for the ledger to be complete, then invoices several accounts (real Postgres and localstripe).
The Schedule is a stand-in here (``tests/schedule_standin.py``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import stripe
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tcloud.domain.billing_period import period_bounds, period_of
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.billing_helpers import add_usage, complete_hours, make_account, stripe_invoices_for, wait_until
from tests.schedule_standin import monthly_firing, monthly_schedule_on
from workflows.billing import BillingRunStatus, BillingRunWorkflow, billing_run_id


async def test_a_whole_month_schedule_fires_usage_completes_invoices_are_made(
        time_skipping_env: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient) -> None:
    env = time_skipping_env
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

    fire_at = monthly_firing(period)
    async with monthly_schedule_on(env, settings, pool, stripe_api, period):
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
