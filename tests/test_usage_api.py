"""GET /cloud/usage over the real API, Postgres and Prometheus: Cloud Ops GetUsage shape, only the caller's
namespaces, daily and hourly summaries, the incomplete flag, the live estimate, and JSON 4xx for bad input."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client

from tcloud.domain.metering import floor_hour
from tcloud.platform.temporal import connect
from tcloud.settings import Settings
from tests import harness
from tests.usage_fixtures import Tenant, create_tenant, wait_prometheus_total
from tests.usage_workload import billable, run_workload, server_action_counter, settled_server_counter, tenant_worker

DAY1 = datetime(2026, 11, 1, tzinfo=UTC)


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


async def _ledger(pool: asyncpg.Pool, tenant: Tenant, hour: datetime, metric: str, quantity: int) -> None:
    await pool.execute("""INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
                          VALUES ($1, $2, $3, $4, $5, true)""", tenant.namespace, hour, metric, Decimal(quantity),
                       tenant.account_id)


@pytest.fixture(scope="module")
async def tenants(pool: asyncpg.Pool, temporal_client: Client) -> tuple[Tenant, Tenant]:
    a = await create_tenant(pool, temporal_client)
    b = await create_tenant(pool, temporal_client)
    await _ledger(pool, a, DAY1, "actions", 5)
    await _ledger(pool, a, DAY1 + timedelta(hours=5), "actions", 7)
    await _ledger(pool, a, DAY1, "active_storage", 100)
    await _ledger(pool, a, DAY1 + timedelta(days=1, hours=3), "retained_storage", 2)
    await _ledger(pool, b, DAY1, "actions", 1000)
    # Day 1 fully collected by both collectors; day 2 only partly.
    for h in range(24 + 5):
        for collector in ("actions", "storage"):
            await pool.execute("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2)",
                               collector, DAY1 + timedelta(hours=h))
    return a, b


def _records(summary: dict) -> dict[str, dict[str, tuple[str, float]]]:  # type: ignore[type-arg]
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for group in summary.get("recordGroups", []):
        (by,) = group["groupBys"]
        assert by["key"] == "GROUP_BY_KEY_NAMESPACE"
        out[by["value"]] = {r["type"]: (r["unit"], r["value"]) for r in group["records"]}
    return out


async def test_daily_summaries_only_for_the_callers_namespaces(api: TestClient,
                                                               tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    resp = await api.get("/cloud/usage", params={"startTimeInclusive": "2026-11-01",
                                                 "endTimeExclusive": "2026-11-03T00:00:00Z"}, headers=_auth(a))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    day1, day2 = body["summaries"]
    assert (day1["startTime"], day1["endTime"]) == ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    assert day1["incomplete"] is False and day2["incomplete"] is True
    assert _records(day1) == {a.namespace: {"RECORD_TYPE_ACTIONS": ("RECORD_UNIT_NUMBER", 12),
                                            "RECORD_TYPE_ACTIVE_STORAGE": ("RECORD_UNIT_BYTE_SECONDS", 360000)}}
    assert _records(day2) == {a.namespace: {"RECORD_TYPE_RETAINED_STORAGE": ("RECORD_UNIT_BYTE_SECONDS", 7200)}}
    assert b.namespace not in await resp.text()


async def test_hourly_granularity(api: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    resp = await api.get("/cloud/usage", params={"startTimeInclusive": "2026-11-01T04:00:00Z",
                                                 "endTimeExclusive": "2026-11-01T06:00:00Z", "granularity": "hour"},
                         headers=_auth(a))
    assert resp.status == 200, await resp.text()
    four, five = (await resp.json())["summaries"]
    assert _records(four) == {} and four["incomplete"] is False
    assert _records(five) == {a.namespace: {"RECORD_TYPE_ACTIONS": ("RECORD_UNIT_NUMBER", 7)}}


@pytest.mark.parametrize("params, message", [
    ({"startTimeInclusive": "yesterday"}, "RFC 3339"),
    ({"startTimeInclusive": "2026-11-01T00:30:00Z", "endTimeExclusive": "2026-11-02"}, "boundary"),
    ({"startTimeInclusive": "2026-11-02", "endTimeExclusive": "2026-11-01"}, "before"),
    ({"startTimeInclusive": "2025-01-01", "endTimeExclusive": "2026-01-01"}, "at most"),
    ({"granularity": "week"}, "granularity"),
    ({"estimate": "maybe"}, "estimate"),
    ({"start": "2026-11-01"}, "unknown query parameter"),
])
async def test_bad_input_answers_json_400(api: TestClient, tenants: tuple[Tenant, Tenant],
                                          params: dict[str, str], message: str) -> None:
    resp = await api.get("/cloud/usage", params=params, headers=_auth(tenants[0]))
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == 400 and message in body["message"]


async def test_needs_an_api_key(api: TestClient) -> None:
    resp = await api.get("/cloud/usage")
    assert resp.status == 401 and (await resp.json())["message"]
    resp = await api.get("/cloud/usage", headers={"Authorization": "Bearer tcsk_000000000000_nope"})
    assert resp.status == 401


async def test_live_estimate_of_this_hour_from_prometheus(
        api: TestClient, worker: None, pool: asyncpg.Pool, temporal_client: Client, settings: Settings,
        temporal_server: harness.TemporalServer, prometheus: harness.Prometheus) -> None:
    tenant = await create_tenant(pool, temporal_client)
    port = temporal_server.ports.metrics
    hour = floor_hour(datetime.now(UTC))
    client = await connect(settings, namespace=tenant.namespace)
    async with tenant_worker(client):
        await run_workload(client, prefix=f"est-{secrets.token_hex(2)}", completed=2, held=0)
    counter = await asyncio.to_thread(settled_server_counter, port, tenant.label,
                                      at_least=billable(server_action_counter(port, tenant.label)))
    await asyncio.to_thread(wait_prometheus_total, PrometheusConnect(prometheus.url, disable_ssl=True),
                            tenant.label, sum(counter.values()))
    resp = await api.get("/cloud/usage", params={"estimate": "true"}, headers=_auth(tenant))
    assert resp.status == 200, await resp.text()
    estimate = (await resp.json())["currentHourEstimate"]
    assert estimate["isEstimate"] is True and "error" not in estimate
    actions = _records(estimate)[tenant.namespace]["RECORD_TYPE_ACTIONS"][1]
    if floor_hour(datetime.now(UTC)) == hour:  # the workload all fell in this hour
        assert actions == billable(counter)
    else:
        assert actions <= billable(counter)


async def test_openapi_documents_the_route(api: TestClient) -> None:
    doc = await (await api.get("/openapi.json")).json()
    op = doc["paths"]["/cloud/usage"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"startTimeInclusive", "endTimeExclusive", "granularity"}
