"""The Temporal server restarted and PostgreSQL crashed mid-run, several times, while a billing run, namespace
provisioning and a backup are in flight: nothing lost, nothing billed or created twice, the backup restores.

This module runs on a Temporal dev server and an embedded PostgreSQL of its own (restarting the session's would
break every other module); the worker runs in this process and must ride through both.
(kill -9 of the worker is covered by test_billing_crash, test_namespaces_crash and test_backup_crash;
the metering pipeline through restarts and a Prometheus outage by test_usage_faults.)
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import stripe
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.runtime import Runtime

from api.app import create_app
from tcloud.domain.billing_period import period_bounds
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import create_account, unique, wait_stripe_customer
from tests.backup_support import fill
from tests.billing_helpers import add_usage, complete_hours, make_account
from tests.figures import Figures
from tests.reliability_support import (
    FaultLog,
    check_backup_restores,
    check_invoices,
    check_ledger_unique,
    check_namespaces,
    crash_postgres,
    inject_until_done,
    restart_temporal,
    run_result_or_diagnosis,
)
from tests.security_support import on_server, private_temporal, running_worker
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id

PERIOD, LONG_PERIOD = "2025-06", "2025-07"
# The short variant; bench/reliability_suite.py sets more.
ACCOUNTS = int(os.environ.get("TCLOUD_RELIABILITY_ACCOUNTS", "60"))
ROUNDS = int(os.environ.get("TCLOUD_RELIABILITY_ROUNDS", "2"))  # each: a Temporal restart and a Postgres crash
NAMESPACES = 3


@dataclass
class Platform:
    settings: Settings
    temporal: harness.TemporalServer
    pgdata: Path
    pool: asyncpg.Pool
    api: TestClient
    client: Client
    postgres: harness.Postgres

    async def empty_database(self, name: str) -> str:
        """A new, empty database on this module's server, for a restore to land in."""
        admin = await asyncpg.connect(self.postgres.server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.postgres.dsn(name)


@pytest.fixture(scope="module")
def own_temporal(settings: Settings, temporal_factory: harness.TemporalFactory,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.TemporalServer]:
    yield from private_temporal(temporal_factory, tmp_path_factory.mktemp("restart-temporal"),
                                settings.control_namespace)


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Postgres]:
    pg = harness.Postgres(tmp_path_factory.mktemp("restart-pg") / "pgdata")
    pg.start()
    yield pg
    pg.stop()


@pytest_asyncio.fixture(scope="module")
async def platform(settings: Settings, own_temporal: harness.TemporalServer, own_postgres: harness.Postgres,
                   runtime: Runtime) -> AsyncIterator[Platform]:
    admin = await asyncpg.connect(own_postgres.server_dsn)
    try:
        await admin.execute('CREATE DATABASE "tcloud"')
    finally:
        await admin.close()
    own = on_server(settings, own_temporal, postgres_dsn=SecretStr(own_postgres.dsn("tcloud")))
    async with running_worker(own, runtime):
        pool = await create_pool(own.postgres_dsn.get_secret_value())
        api = TestClient(TestServer(create_app(own)))
        await api.start_server()
        yield Platform(own, own_temporal, own_postgres.pgdata, pool, api, await connect(own), own_postgres)
        await api.close()
        await pool.close()


async def test_restarts_and_crashes_lose_nothing_and_double_nothing(
        platform: Platform, operator_headers: dict[str, str], stripe_api: stripe.StripeClient,
        figures: Figures) -> None:
    await scenario(platform, operator_headers, stripe_api, figures, period=PERIOD, accounts=ACCOUNTS, rounds=ROUNDS)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_long_variant_more_accounts_more_faults(
        platform: Platform, operator_headers: dict[str, str], stripe_api: stripe.StripeClient,
        figures: Figures) -> None:
    await scenario(platform, operator_headers, stripe_api, figures, period=LONG_PERIOD,
                   accounts=max(ACCOUNTS, 150), rounds=max(ROUNDS, 5))


async def scenario(platform: Platform, operator_headers: dict[str, str], stripe_api: stripe.StripeClient,
                   figures: Figures, *, period: str, accounts: int, rounds: int) -> None:
    """Bill ``accounts`` for ``period`` and provision namespaces through ``rounds`` of both faults, then back up
    through a Postgres crash; check every invariant."""
    rng = random.Random()
    pool, api = platform.pool, platform.api
    billed = []
    for i in range(accounts):
        account = await make_account(pool, stripe_api, plan=("payg", "essentials", "business")[i % 3])
        await add_usage(pool, account.id, period, actions=rng.randrange(0, 30_000_000),
                        active_byte_hours=rng.randrange(0, 5000) * 10**9, namespaces=1 + i % 2)
        billed.append((account.id, account.customer))
    await complete_hours(pool, period)
    tenant = await create_account(api, operator_headers, prefix="rel")
    await wait_stripe_customer(pool, tenant.id, within=120)

    handle = await platform.client.start_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=period, grace_hours=0, max_concurrent=10, page_size=20,
                                                accounts_per_run=20),
        id=billing_run_id(period), task_queue=platform.settings.task_queue)
    requested = []
    for _ in range(NAMESPACES):
        resp = await api.post("/cloud/namespaces", headers=tenant.headers,
                              json={"spec": {"name": unique("rel-"), "retentionDays": 3}})
        assert resp.status == 202, await resp.text()
        created = await resp.json()
        requested.append((created["namespace"], created["asyncOperation"]["id"]))

    async def run_finished() -> bool:
        try:
            return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING
        except Exception:  # the server is restarting: still in flight as far as we know
            return False

    log = FaultLog()
    faults = [("temporal restart", lambda: restart_temporal(platform.temporal, platform.settings.control_namespace)),
              ("postgres crash", lambda: crash_postgres(platform.pgdata))] * rounds
    # Short pauses: on a quiet machine the run is quick, and both kinds of fault must land while it runs.
    await inject_until_done(faults, run_finished, log, rng=rng, pause=(0.2, 1.0))
    result = await run_result_or_diagnosis(platform.client, handle, period, within=240)
    print(f"faults: {log.injected}; mid-run: {log.mid_flight}")
    assert {"temporal restart", "postgres crash"} <= set(log.mid_flight), \
        "the run finished before both faults landed: raise TCLOUD_RELIABILITY_ACCOUNTS"
    # Every account that existed before the period ended, this scenario's and any earlier one's in this database.
    existing = await pool.fetchval("SELECT count(*) FROM accounts WHERE created_at < $1", period_bounds(period)[1])
    assert result.phase == "done" and sum(result.counts.values()) == existing >= accounts

    figures.add("invoices checked", await check_invoices(pool, stripe_api, billed, period))
    figures.add("namespaces checked", await check_namespaces(api, tenant.headers, pool, platform.client, tenant.id,
                                                             requested))
    await check_ledger_unique(pool)

    # A backup with PostgreSQL crashing under pg_dump: it completes whole, and restores identically.
    await fill(pool, rows=20_000, seed="reliability")  # enough rows that the dump takes a moment
    resp = await api.post("/backups", headers=operator_headers, json={})
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    backup = platform.client.get_workflow_handle(started["workflow_id"])
    for _ in range(2000):  # crash as soon as an activity of the backup runs
        info = await backup.describe()
        if info.raw_description.pending_activities or info.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.005)
    await asyncio.to_thread(crash_postgres, platform.pgdata)
    log.record("postgres crash during backup",
               (await backup.describe()).status == WorkflowExecutionStatus.RUNNING)
    await asyncio.wait_for(backup.result(), timeout=300)
    await check_backup_restores(platform.settings, started["backup_id"],
                                await platform.empty_database(f"restored_{period.replace('-', '_')}"))
    figures.add("faults injected", len(log.injected))
    figures.add("faults landed mid-run", len(log.mid_flight))
    figures.add("backups restored after faults", 1)
