"""Setup shared by the usage tests: a tenant account and namespace, and waiting for Prometheus to catch up."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client

from activities.usage import CollectHourInput, CollectHourOutput
from tcloud.domain import apikeys
from tcloud.domain.metering import floor_hour, hour_id, sanitize_label_value
from tcloud.platform.temporal import ensure_namespace
from tcloud.settings import Settings
from workflows.usage import UsageCollectHourWorkflow


@dataclass(frozen=True)
class Tenant:
    account_id: str
    namespace: str
    api_key: str

    @property
    def label(self) -> str:
        return sanitize_label_value(self.namespace)


async def create_tenant(pool: asyncpg.Pool, client: Client, *, retention_days: int = 3) -> Tenant:
    """An account owning a fresh namespace on the server since yesterday, with an API key (rows by SQL)."""
    account = "acct" + secrets.token_hex(4)
    name = "orders" + secrets.token_hex(2)
    namespace = f"{name}.{account}"
    await ensure_namespace(client, namespace, retention_days=retention_days)
    key = apikeys.new_key()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO accounts (id, name, email) VALUES ($1, $1, $1 || '@example.test')", account)
        await conn.execute(
            """INSERT INTO namespaces (namespace, name, account_id, state, retention_days)
               VALUES ($1, $2, $3, 'active', $4)""", namespace, name, account, retention_days)
        await conn.execute("INSERT INTO namespace_ownership (namespace, account_id, valid_from) VALUES ($1, $2, $3)",
                           namespace, account, datetime.now(UTC) - timedelta(days=1))
        await conn.execute("INSERT INTO api_keys (id, account_id, prefix, secret_hash) VALUES ($1, $2, $3, $4)",
                           "key" + key.prefix, account, key.prefix, key.secret_hash)
    return Tenant(account, namespace, key.token)


def prometheus_total(prom: PrometheusConnect, label: str, label_name: str = "namespace") -> int:
    result = prom.custom_query(f'sum(action{{{label_name}="{label}"}})')
    return int(float(result[0]["value"][1])) if result else 0


def wait_prometheus_total(prom: PrometheusConnect, label: str, expected: int, timeout: float = 60) -> None:
    """Until Prometheus has scraped the server's current total for the namespace (all action types)."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        try:
            seen = prometheus_total(prom, label)
        except Exception:  # Prometheus still starting
            seen = -1
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus shows {seen} actions for {label}, the server {expected}")


async def collect_provisional(client: Client, settings: Settings, collector: str,
                              hour: datetime) -> CollectHourOutput:
    """Collect an hour that may still be open through the real workflow (never marks the hour collected)."""
    return await client.execute_workflow(
        UsageCollectHourWorkflow.run, CollectHourInput(collector, floor_hour(hour), provisional=True),
        id=f"usage/{collector}/{hour_id(hour)}/provisional-{secrets.token_hex(3)}", task_queue=settings.task_queue,
    )


async def ledger_quantity(pool: asyncpg.Pool, namespace: str, metric: str, hours: list[datetime]) -> int:
    value = await pool.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM usage_ledger WHERE namespace = $1 AND metric = $2 "
        "AND hour = ANY($3::timestamptz[])", namespace, metric, hours)
    return int(value)
