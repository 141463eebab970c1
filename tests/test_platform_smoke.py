"""Smoke test over the real parts: worker + Temporal, Postgres migrations, Prometheus, localstripe, API."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client
from temporalio.worker import Replayer

from tcloud.domain.metering import sanitize_label_value
from tcloud.platform.db import migrate, migration_files
from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.settings import Settings
from tests import harness
from workflows.platform_check import PlatformCheckInput, PlatformCheckOutput, PlatformCheckWorkflow


async def test_platform_check_workflow_runs_on_the_worker(
    worker: None, temporal_client: Client, settings: Settings, prometheus: harness.Prometheus
) -> None:
    handle = await temporal_client.start_workflow(
        PlatformCheckWorkflow.run, PlatformCheckInput(), id=f"platform-check/{uuid.uuid4()}",
        task_queue=settings.task_queue,
    )
    result: PlatformCheckOutput = await handle.result()
    by_name = {r.component: r.detail for r in result.results}
    assert by_name["postgres"] == f"{len(migration_files())} migrations applied"
    assert by_name["stripe"].startswith("reachable")
    assert "scrape targets up" in by_name["prometheus"]

    # The history replays deterministically.
    history = await handle.fetch_history()
    await Replayer(workflows=[PlatformCheckWorkflow], data_converter=DATA_CONVERTER).replay_workflow(history)


async def test_migrations_apply_once_under_concurrency(postgres: harness.Postgres) -> None:
    name = "t_migrate_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(postgres.server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conns = [await asyncpg.connect(postgres.dsn(name)) for _ in range(5)]
        applied = await asyncio.gather(*(migrate(c) for c in conns))
        # Exactly one caller applied everything; the others found it done.
        assert sorted(len(a) for a in applied) == [0, 0, 0, 0, len(migration_files())]
        rows = await conns[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == [n for n, _ in migration_files()]
        for c in conns:
            await c.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_postgres_schema_round_trip(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO accounts (id, name, email) VALUES ('smoke1', 'Smoke Inc', 'ops@smoke.test')"
    )
    row = await pool.fetchrow("SELECT name, status, plan FROM accounts WHERE id = 'smoke1'")
    assert dict(row) == {"name": "Smoke Inc", "status": "active", "plan": "essentials"}
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO accounts (id, name, email) VALUES ('Bad-Id', 'x', 'x@x.test')")


async def test_prometheus_scrapes_temporal_action_counter(
    worker: None, temporal_client: Client, settings: Settings, prometheus: harness.Prometheus
) -> None:
    prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    label = sanitize_label_value(settings.control_namespace)
    query = f'sum(action{{namespace="{label}", action_type="grpc_StartWorkflowExecution"}})'

    def started() -> float:
        result = prom.custom_query(query)
        return float(result[0]["value"][1]) if result else 0.0

    before = await asyncio.to_thread(started)
    for _ in range(3):
        await temporal_client.execute_workflow(
            PlatformCheckWorkflow.run, PlatformCheckInput(components=["postgres"]),
            id=f"platform-check/{uuid.uuid4()}", task_queue=settings.task_queue,
        )
    # The server flushes counters every second or two, and Prometheus scrapes every second.
    await asyncio.to_thread(harness.wait_for, lambda: started() >= before + 3, timeout=30,
                            what="three StartWorkflowExecution actions in Prometheus")


async def test_localstripe_creates_a_customer(stripe_api: stripe.StripeClient) -> None:
    created = await stripe_api.v1.customers.create_async(
        {"email": "smoke@example.test", "metadata": {"account_id": "smoke1"}}
    )
    fetched = await stripe_api.v1.customers.retrieve_async(created.id)
    assert fetched.email == "smoke@example.test"
    assert fetched.metadata["account_id"] == "smoke1"


async def test_api_health_and_json_errors(api: TestClient) -> None:
    assert (await api.get("/healthz")).status == 200
    ready = await api.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {"temporal": "ok", "postgres": "ok"}
    missing = await api.get("/no/such/route")
    assert missing.status == 404
    assert (await missing.json())["message"]
    metrics = await api.get("/metrics")
    assert "tcloud_api_requests" in await metrics.text()
