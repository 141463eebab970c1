"""Usage collection against the real parts: a tenant workload on the session's Temporal server, Prometheus
scraping it, the real worker collecting into Postgres, and the hourly Schedule."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import pytest_asyncio
from prometheus_api_client import PrometheusConnect
from temporalio.client import (
    Client,
    ScheduleBackfill,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    WorkflowHandle,
)
from temporalio.worker import Replayer

from activities.usage import CollectHourInput
from tcloud.domain.metering import HOUR, floor_hour, hour_id
from tcloud.platform.clients import prometheus_client
from tcloud.platform.temporal import DATA_CONVERTER, connect
from tcloud.settings import Settings
from tests import harness
from tests.usage_fixtures import Tenant, collect_provisional, create_tenant, ledger_quantity, wait_prometheus_total
from tests.usage_tenant_app import TenantOrderWorkflow
from tests.usage_workload import (
    billable,
    cloud_actions_of,
    run_workload,
    server_action_counter,
    settled_server_counter,
    tenant_worker,
)
from workers import cap_usage
from workers.registry import Clients
from workflows.usage import UsageCollectHourWorkflow, UsageHourlyInput, UsageHourlyWorkflow


@dataclass
class Workload:
    tenant: Tenant
    handles: list[WorkflowHandle]
    hours: list[datetime]  # every hour the workload's actions may fall in
    expected_actions: int  # Temporal Cloud's rules applied to the histories
    server_delta: int  # the server's own counter, before -> after, billable types
    counter_after: dict[str, int]


@pytest_asyncio.fixture(scope="module")
async def workload(worker: None, pool: asyncpg.Pool, temporal_client: Client, settings: Settings,
                   temporal_server: harness.TemporalServer,
                   prometheus: harness.Prometheus) -> AsyncIterator[Workload]:
    tenant = await create_tenant(pool, temporal_client)
    port = temporal_server.ports.metrics
    before = server_action_counter(port, tenant.label)
    first_hour = floor_hour(datetime.now(UTC))
    tenant_client = await connect(settings, namespace=tenant.namespace)
    async with tenant_worker(tenant_client):
        handles = await run_workload(tenant_client, prefix=f"order-{secrets.token_hex(3)}", completed=5, held=2)
        expected = await cloud_actions_of(handles)
        after = await asyncio.to_thread(settled_server_counter, port, tenant.label,
                                        at_least=billable(before) + expected)
        await asyncio.to_thread(wait_prometheus_total, PrometheusConnect(prometheus.url, disable_ssl=True),
                                tenant.label, sum(after.values()))
        hours = [first_hour] if floor_hour(datetime.now(UTC)) == first_hour else [first_hour, first_hour + HOUR]
        yield Workload(tenant, handles, hours, expected, billable(after) - billable(before), after)
        for h in handles[5:]:
            await h.signal(TenantOrderWorkflow.release)
            await h.result()


async def test_ledger_actions_equal_the_server_counter_and_cloud_rules(
        workload: Workload, pool: asyncpg.Pool, temporal_client: Client, settings: Settings) -> None:
    # The workload is what we think it is: local activities made batch markers, one activity retried.
    assert workload.counter_after.get("command_BatchMarkers", 0) > 0
    assert workload.counter_after.get("activity_retry", 0) > 0
    assert workload.expected_actions >= 7 * 8

    for hour in workload.hours:
        out = await collect_provisional(temporal_client, settings, "actions", hour)
        assert out.written and out.prometheus_queries <= 3
    ledger = await ledger_quantity(pool, workload.tenant.namespace, "actions", workload.hours)
    assert ledger == workload.server_delta == workload.expected_actions

    rows = await pool.fetch("SELECT namespace, account_id, billable FROM usage_ledger "
                            "WHERE hour = ANY($1::timestamptz[]) AND metric = 'actions'", workload.hours)
    by_ns = {r["namespace"]: (r["account_id"], r["billable"]) for r in rows}
    assert by_ns[workload.tenant.namespace] == (workload.tenant.account_id, True)

    # Collecting again changes nothing for the tenant; meanwhile the collections themselves (workflows in the
    # control namespace) show up as the platform's own usage: recorded, never billed.
    control: list[tuple[str | None, bool]] = []
    for _ in range(60):
        for hour in workload.hours:
            await collect_provisional(temporal_client, settings, "actions", hour)
        assert await ledger_quantity(pool, workload.tenant.namespace, "actions", workload.hours) == ledger
        control = [(r["account_id"], r["billable"]) for r in await pool.fetch(
            "SELECT account_id, billable FROM usage_ledger WHERE namespace = $1 AND hour = ANY($2::timestamptz[])",
            settings.control_namespace, workload.hours)]
        if control:
            break
        await asyncio.sleep(0.5)
    assert control and all(c == (None, False) for c in control)


async def test_storage_byte_hours_from_visibility(workload: Workload, pool: asyncpg.Pool, temporal_client: Client,
                                                  settings: Settings) -> None:
    hour = floor_hour(datetime.now(UTC))
    out = await collect_provisional(temporal_client, settings, "storage", hour)
    assert out.written
    end = hour + HOUR
    active = retained = Decimal(0)
    for h in workload.handles:
        info = (await h.describe()).raw_description.workflow_execution_info
        size = Decimal(info.history_size_bytes)
        assert size > 0
        start = max(info.start_time.ToDatetime(UTC), hour)
        if info.HasField("close_time") and info.close_time.seconds:
            close = max(info.close_time.ToDatetime(UTC), hour)
            active += size * Decimal(str((close - start).total_seconds()))
            retained += size * Decimal(str((end - close).total_seconds()))
        else:
            active += size * Decimal(str((end - start).total_seconds()))

    def byte_hours(byte_seconds: Decimal) -> int:
        return int((byte_seconds / 3600).to_integral_value(ROUND_HALF_UP))

    assert await ledger_quantity(pool, workload.tenant.namespace, "active_storage", [hour]) == byte_hours(active)
    assert await ledger_quantity(pool, workload.tenant.namespace, "retained_storage", [hour]) == byte_hours(retained)
    assert byte_hours(active) > 0 and byte_hours(retained) > 0


async def _run_hourly(client: Client, settings: Settings, through: datetime) -> dict[str, list[datetime]]:
    out = await client.execute_workflow(UsageHourlyWorkflow.run, UsageHourlyInput(through=through),
                                        id=f"usage/hourly-test-{secrets.token_hex(3)}", task_queue=settings.task_queue)
    return out.collected


async def test_schedule_collects_the_closed_hour_exactly_once(
        workload: Workload, pool: asyncpg.Pool, temporal_client: Client, settings: Settings) -> None:
    sched_settings = settings.model_copy(update={"schedules_enabled": True,
                                                 "schedule_prefix": f"t{secrets.token_hex(3)}-"})
    clients = Clients(settings=sched_settings, pool=pool, temporal=temporal_client, stripe=None,  # type: ignore[arg-type]
                      prometheus=prometheus_client(sched_settings))
    await cap_usage.ensure_schedules(clients)
    await cap_usage.ensure_schedules(clients)  # idempotent: updates in place
    handle = temporal_client.get_schedule_handle(cap_usage.schedule_id(sched_settings.schedule_prefix))
    try:
        desc = await handle.describe()
        assert desc.schedule.spec.intervals == [ScheduleIntervalSpec(every=HOUR, offset=timedelta(minutes=2))]
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE

        through = floor_hour(datetime.now(UTC))
        closed = through - HOUR
        await handle.trigger()
        for _ in range(100):
            desc = await handle.describe()
            if desc.info.recent_actions:
                break
            await asyncio.sleep(0.2)
        started = desc.info.recent_actions[0].action
        run = temporal_client.get_workflow_handle_for(UsageHourlyWorkflow.run, started.workflow_id,
                                                      run_id=started.first_execution_run_id)
        assert started.workflow_id.startswith(f"{sched_settings.schedule_prefix}usage/hourly")
        result = await run.result()
        assert result.collected == {"actions": [closed], "storage": [closed]}
        # Deterministic: the run's history replays, and so does one of its children.
        replayer = Replayer(workflows=[UsageHourlyWorkflow, UsageCollectHourWorkflow], data_converter=DATA_CONVERTER)
        await replayer.replay_workflow(await run.fetch_history())
        child = temporal_client.get_workflow_handle(f"usage/actions/{hour_id(closed)}")
        await replayer.replay_workflow(await child.fetch_history())

        # An operator's backfill of two past schedule times fills the two hours before them, below the watermark.
        old = [through - 4 * HOUR, through - 3 * HOUR]
        # (The Schedule fires at :02, so the range holds two firings: 3 h and 2 h before `through`.)
        await handle.backfill(ScheduleBackfill(start_at=through - 3 * HOUR,
                                               end_at=through - 2 * HOUR + timedelta(minutes=5),
                                               overlap=ScheduleOverlapPolicy.ALLOW_ALL))
        for _ in range(300):
            got = await pool.fetch("SELECT collector, hour FROM usage_collected_hours "
                                   "WHERE hour = ANY($1::timestamptz[]) ORDER BY collector, hour", old)
            if len(got) == 4:
                break
            await asyncio.sleep(0.2)
        assert [(r["collector"], r["hour"]) for r in got] == [(c, h) for c in ("actions", "storage") for h in old]
    finally:
        await handle.delete()

    rows_before = await pool.fetch("SELECT * FROM usage_ledger WHERE hour = $1 ORDER BY namespace, metric", closed)
    marks_before = await pool.fetch("SELECT * FROM usage_collected_hours WHERE hour = $1 ORDER BY collector", closed)
    assert [m["collector"] for m in marks_before] == ["actions", "storage"]
    assert await pool.fetchval("SELECT collected_through FROM usage_watermarks WHERE collector = 'actions'") == through

    # Again: the hourly run owes nothing, a direct re-collection writes nothing, and no row changed.
    assert await _run_hourly(temporal_client, settings, through) == {}
    again = await temporal_client.execute_workflow(
        UsageCollectHourWorkflow.run, CollectHourInput("actions", closed),
        id=f"usage/actions/{hour_id(closed)}", task_queue=settings.task_queue)
    assert not again.written
    assert await pool.fetch("SELECT * FROM usage_ledger WHERE hour = $1 ORDER BY namespace, metric",
                            closed) == rows_before
    assert await pool.fetch("SELECT * FROM usage_collected_hours WHERE hour = $1 ORDER BY collector",
                            closed) == marks_before


async def test_an_open_hour_is_never_collected_as_final(temporal_client: Client, settings: Settings,
                                                        worker: None) -> None:
    from temporalio.client import WorkflowFailureError

    if floor_hour(datetime.now(UTC)) + HOUR - datetime.now(UTC) < timedelta(minutes=1):
        await asyncio.sleep(75)  # let this hour close first: the next one is certainly open for the test
    hour = floor_hour(datetime.now(UTC))
    try:
        await temporal_client.execute_workflow(
            UsageCollectHourWorkflow.run, CollectHourInput("actions", hour),
            id=f"usage/actions/{hour_id(hour)}-early-{secrets.token_hex(2)}", task_queue=settings.task_queue)
    except WorkflowFailureError as err:
        assert "not over yet" in str(err.cause.cause)  # type: ignore[union-attr]
    else:
        raise AssertionError("an open hour was collected as final")
