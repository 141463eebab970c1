"""Metering through faults: the Temporal server restarted mid-hour, and Prometheus stopped for a while.

This module starts its own Temporal server (to restart it) and its own Prometheus scraping it (to stop it): the
session's servers are shared with other modules. The control plane's worker still runs on the session server; only
its Prometheus URL points here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client, WorkflowExecutionStatus

from tcloud.domain.metering import HOUR, floor_hour, is_billable_action_type
from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.settings import Settings
from tests import harness
from tests.figures import Figures
from tests.usage_fixtures import Tenant, collect_provisional, create_tenant, ledger_quantity, wait_prometheus_total
from tests.usage_workload import billable, cloud_actions_of, run_workload, settled_server_counter, tenant_worker
from workflows.usage import UsageHourlyInput, UsageHourlyWorkflow


@pytest.fixture(scope="module")
def own_temporal(temporal_factory: harness.TemporalFactory,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.TemporalServer]:
    server = temporal_factory(tmp_path_factory.mktemp("own-temporal"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_prometheus(tmp_path_factory: pytest.TempPathFactory, own_temporal: harness.TemporalServer,
                   prometheus: harness.Prometheus) -> Iterator[harness.Prometheus]:
    prom = harness.Prometheus(tmp_path_factory.mktemp("own-prometheus"),
                              {"temporal": [f"127.0.0.1:{own_temporal.ports.metrics}"]})
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def settings(settings: Settings, own_prometheus: harness.Prometheus) -> Settings:
    return settings.model_copy(update={"prometheus_url": own_prometheus.url})


async def _own_client(server: harness.TemporalServer, namespace: str) -> Client:
    return await Client.connect(server.address, namespace=namespace, data_converter=DATA_CONVERTER)


def _hours_since(start: datetime) -> list[datetime]:
    first, last = floor_hour(start), floor_hour(datetime.now(UTC))
    return [first] if first == last else [first, last]


async def _wait_for_room_in_this_hour(minutes: int) -> None:
    """Start close to an hour's end in the next hour, so the phases before and after a restart share one window."""
    now = datetime.now(UTC)
    left = floor_hour(now) + HOUR - now
    if left < timedelta(minutes=minutes):
        await asyncio.sleep(left.total_seconds() + 2)


async def _phase(server: harness.TemporalServer, prom: PrometheusConnect, runs: dict[Tenant, int],
                 tag: str) -> dict[Tenant, tuple[int, dict[str, int]]]:
    """Run ``runs[tenant]`` orders in each tenant's namespace; its Cloud count and settled server counter."""
    out = {}
    for tenant, completed in runs.items():
        client = await _own_client(server, tenant.namespace)
        async with tenant_worker(client):
            handles = await run_workload(client, prefix=f"{tag}-{secrets.token_hex(2)}", completed=completed, held=0)
            expected = await cloud_actions_of(handles)
        counter = await asyncio.to_thread(settled_server_counter, server.ports.metrics, tenant.label,
                                          at_least=expected)
        await asyncio.to_thread(wait_prometheus_total, prom, tenant.label, sum(counter.values()))
        out[tenant] = (expected, counter)
    return out


async def test_server_restart_mid_hour_loses_and_doubles_nothing(
        worker: None, pool: asyncpg.Pool, temporal_client: Client, settings: Settings,
        own_temporal: harness.TemporalServer, own_prometheus: harness.Prometheus, figures: Figures) -> None:
    await _wait_for_room_in_this_hour(minutes=4)
    began = datetime.now(UTC)
    prom = PrometheusConnect(own_prometheus.url, disable_ssl=True)
    busy = await create_tenant(pool, await _own_client(own_temporal, "default"))
    quiet = await create_tenant(pool, await _own_client(own_temporal, "default"))

    # Before the restart `busy` does much and `quiet` little; after it, the other way round: `quiet`'s counters
    # climb back above their old values without ever dropping, and only `busy`'s drop reveals the restart.
    before = await _phase(own_temporal, prom, {busy: 5, quiet: 1}, "pre")
    await asyncio.to_thread(own_temporal.restart)
    figures.add("faults injected")
    after = await _phase(own_temporal, prom, {busy: 1, quiet: 4}, "post")
    assert billable(after[busy][1]) < billable(before[busy][1])
    assert all(after[quiet][1][k] > v for k, v in before[quiet][1].items() if is_billable_action_type(k))

    hours = _hours_since(began)
    for hour in hours:
        out = await collect_provisional(temporal_client, settings, "actions", hour)
        assert out.prometheus_queries <= 3
    for tenant in (busy, quiet):
        ledger = await ledger_quantity(pool, tenant.namespace, "actions", hours)
        server_total = billable(before[tenant][1]) + billable(after[tenant][1])  # each process counted from zero
        assert ledger == server_total == before[tenant][0] + after[tenant][0], tenant.namespace
    assert await pool.fetchval("SELECT count(*) FROM usage_ledger WHERE quantity < 0") == 0


async def test_prometheus_outage_then_missed_hours_filled_exactly_once(
        worker: None, pool: asyncpg.Pool, temporal_client: Client, settings: Settings,
        own_temporal: harness.TemporalServer, own_prometheus: harness.Prometheus, figures: Figures) -> None:
    began = datetime.now(UTC)
    port = own_temporal.ports.metrics
    prom = PrometheusConnect(own_prometheus.url, disable_ssl=True)
    tenant = await create_tenant(pool, await _own_client(own_temporal, "default"))
    through = floor_hour(began)
    missed = [through - 3 * HOUR, through - 2 * HOUR, through - HOUR]
    # The collectors last completed three hours ago, as if the worker had been stopped since.
    await pool.execute("""INSERT INTO usage_watermarks (collector, collected_through) VALUES
                          ('actions', $1), ('storage', $1)""", missed[0])

    await asyncio.to_thread(own_prometheus.stop)
    figures.add("faults injected")
    try:
        client = await _own_client(own_temporal, tenant.namespace)
        async with tenant_worker(client):
            handles = await run_workload(client, prefix=f"dark-{secrets.token_hex(2)}", completed=3, held=0)
            expected = await cloud_actions_of(handles)
            counter = await asyncio.to_thread(settled_server_counter, port, tenant.label, at_least=expected)

        run = await temporal_client.start_workflow(
            UsageHourlyWorkflow.run, UsageHourlyInput(through=through),
            id=f"usage/hourly-outage-{secrets.token_hex(3)}", task_queue=settings.task_queue)
        await asyncio.sleep(5)
        # Prometheus is down: actions wait (retrying) with no hour completed; storage, read from visibility, goes on.
        assert (await run.describe()).status == WorkflowExecutionStatus.RUNNING
        for _ in range(150):
            done = {(r["collector"], r["hour"]) for r in await pool.fetch(
                "SELECT collector, hour FROM usage_collected_hours WHERE hour = ANY($1::timestamptz[])", missed)}
            if len(done) == len(missed):
                break
            await asyncio.sleep(0.2)
        assert done == {("storage", h) for h in missed}
        assert (await run.describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        await asyncio.to_thread(own_prometheus.start)

    result = await asyncio.wait_for(run.result(), timeout=180)
    assert result.collected == {"actions": missed, "storage": missed}
    rows = await pool.fetch("SELECT collector, hour FROM usage_collected_hours ORDER BY collector, hour")
    assert [(r["collector"], r["hour"]) for r in rows] == [(c, h) for c in ("actions", "storage") for h in missed]
    assert await pool.fetchval("SELECT collected_through FROM usage_watermarks WHERE collector = 'storage'") == through

    # Running again fills nothing twice.
    again = await temporal_client.execute_workflow(
        UsageHourlyWorkflow.run, UsageHourlyInput(through=through),
        id=f"usage/hourly-outage-again-{secrets.token_hex(3)}", task_queue=settings.task_queue)
    assert again.collected == {}
    assert await pool.fetchval("SELECT count(*) FROM usage_collected_hours") == 2 * len(missed)

    # The actions run while Prometheus was down are counted when it next scraped them, exactly.
    await asyncio.to_thread(wait_prometheus_total, prom, tenant.label, sum(counter.values()))
    hours = _hours_since(began)
    for hour in hours:
        await collect_provisional(temporal_client, settings, "actions", hour)
    assert await ledger_quantity(pool, tenant.namespace, "actions", hours) == billable(counter) == expected

