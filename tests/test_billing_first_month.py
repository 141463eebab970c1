"""The platform's first month bills: hours before metering began are never owed, so a platform installed in the
middle of a month does not wait forever for the hours before it existed; a gap after metering began still waits.

This module's database is its own, so "metering began" is the first hour this module marks collected.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import stripe
from temporalio.client import Client, WorkflowExecutionStatus

from activities.billing import BillingActivities, PeriodInput
from tcloud.domain.billing_period import owed_hours, period_bounds
from tcloud.domain.metering import hours_between
from tcloud.settings import Settings
from tests.billing_helpers import add_usage, make_account, wait_until
from workflows.billing import BillingRunInput, BillingRunStatus, BillingRunWorkflow, billing_run_id

INSTALLED_IN = "2025-09"  # metering began on the 15th of this month
NEXT = "2025-10"
INSTALLED_AT = period_bounds(INSTALLED_IN)[0] + timedelta(days=14)


async def _mark_collected(pool: asyncpg.Pool, start: datetime, end: datetime, *,
                          skip: frozenset[datetime] = frozenset()) -> None:
    """Both collectors collected every hour of ``[start, end)`` but ``skip``."""
    hours = [h for h in hours_between(start, end) if h not in skip]
    await pool.executemany(
        "INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(c, hour) for c in ("actions", "storage") for hour in hours])


def test_owed_hours_start_when_metering_began() -> None:
    start, end = period_bounds(INSTALLED_IN)
    assert owed_hours(INSTALLED_IN, None) == (start, end)  # nothing collected yet: the whole month is owed
    assert owed_hours(INSTALLED_IN, INSTALLED_AT) == (INSTALLED_AT, end)
    assert owed_hours(INSTALLED_IN, start - timedelta(days=40)) == (start, end)
    assert owed_hours(INSTALLED_IN, end + timedelta(days=3)) == (end, end)  # began later: nothing owed


async def test_a_month_the_platform_joined_midway_is_billed(
        settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, worker: None,
        temporal_client: Client) -> None:
    account = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, account.id, INSTALLED_IN, actions=2_000_000)
    await _mark_collected(pool, INSTALLED_AT, period_bounds(INSTALLED_IN)[1])
    completeness = await BillingActivities(pool=pool, stripe_client=stripe_api).check_period_complete(
        PeriodInput(INSTALLED_IN))
    assert completeness.missing_hours == 0
    assert completeness.expected_hours == 2 * int((period_bounds(INSTALLED_IN)[1] - INSTALLED_AT).total_seconds()
                                                  // 3600)
    result = await asyncio.wait_for(temporal_client.execute_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=INSTALLED_IN, grace_hours=0, max_concurrent=2),
        id=billing_run_id(INSTALLED_IN), task_queue=settings.task_queue), timeout=120)
    assert result.phase == "done" and result.counts == {"paid": 1}
    assert await pool.fetchval("SELECT total_cents FROM invoices WHERE account_id = $1", account.id) == 10_000


async def test_a_gap_after_metering_began_is_still_waited_for(
        settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, worker: None,
        temporal_client: Client) -> None:
    start, end = period_bounds(NEXT)
    gap = start + timedelta(days=20, hours=3)
    await _mark_collected(pool, INSTALLED_AT, end, skip=frozenset({gap}))
    handle = await temporal_client.start_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=NEXT, grace_hours=0, poll_minutes=1),
        id=billing_run_id(NEXT), task_queue=settings.task_queue)
    try:
        async def waiting_for_the_gap() -> bool:
            status: BillingRunStatus = await handle.query(BillingRunWorkflow.status)
            return status.phase == "waiting_for_usage" and status.missing_hours == 2

        await wait_until(waiting_for_the_gap, seconds=60, what="the run to wait for the missing hour")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert await pool.fetchval("SELECT count(*) FROM invoices WHERE period = $1", NEXT) == 0
    finally:
        await handle.terminate("test over")
