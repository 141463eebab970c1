"""kill -9 of the worker in the middle of provisioning, then a restart: exactly one namespace, one Stripe customer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import stripe
from aiohttp.test_utils import TestClient
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client, WorkflowExecutionStatus

from launcher import procs
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, unique, wait_operation, wait_stripe_customer
from tests.figures import Figures
from workflows.accounts import account_setup_workflow_id
from workflows.namespaces import create_workflow_id

ATTEMPTS = 5


@pytest.fixture(scope="module")
def crash_settings(settings: Settings) -> Settings:
    """This module's settings with a metrics port of its own (the in-process worker runtime holds the shared one)."""
    return settings.model_copy(update={"worker_metrics_port": procs.free_port()})


@pytest_asyncio.fixture(scope="module")
async def crash_api(crash_settings: Settings) -> AsyncIterator[TestClient]:
    async with harness.api_client(crash_settings) as client:
        yield client


class WorkerProcess:
    """The real worker as a child process that the test may kill -9 and start again."""

    def __init__(self, settings: Settings, log: Path):
        self.settings = settings
        self.managed = harness.worker_process(settings, log)

    def start(self) -> None:
        self.managed.start()
        harness.wait_worker_ready(self.settings, self.managed, timeout=90)

    def kill(self) -> None:
        self.managed.kill()

    def stop(self) -> None:
        self.managed.stop()


@pytest.fixture(scope="module")
def worker_proc(crash_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(crash_settings, tmp_path_factory.mktemp("worker") / "worker.log")
    proc.start()
    yield proc
    proc.stop()


async def kill_when_running(client: Client, workflow_id: str, worker: WorkerProcess) -> bool:
    """kill -9 the worker as soon as the workflow has an activity pending.

    Returns:
        Whether the workflow was still running after the kill, i.e. the crash landed mid-provisioning.
    """
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(2000):
        try:
            info = await handle.describe()
        except Exception:  # not started yet
            await asyncio.sleep(0.005)
            continue
        if info.raw_description.pending_activities or info.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.005)
    await asyncio.to_thread(worker.kill)
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def stripe_customers_of(stripe_api: stripe.StripeClient, account_id: str) -> list[str]:
    page = await stripe_api.v1.customers.list_async({"limit": 100})
    return [c.id async for c in page.auto_paging_iter()
            if c.metadata and c.metadata.to_dict().get("account_id") == account_id]


async def test_kill_9_mid_provisioning_leaves_one_customer_and_one_namespace(
        crash_api: TestClient, operator_headers: dict[str, str], worker_proc: WorkerProcess, pool: asyncpg.Pool,
        temporal_client: Client, stripe_api: stripe.StripeClient, crash_settings: Settings, figures: Figures) -> None:
    account: TestAccount | None = None
    for _ in range(ATTEMPTS):
        account_id = unique("kill")
        resp = await crash_api.post("/admin/accounts", headers=operator_headers,
                                    json={"id": account_id, "name": "Kill Co", "email": f"{account_id}@kill.co"})
        body = await resp.json()
        assert resp.status == 201, body
        account = TestAccount(account_id, body["apiKey"]["token"], body["apiKey"]["id"])
        mid_flight = await kill_when_running(temporal_client, account_setup_workflow_id(account_id), worker_proc)
        figures.add("faults injected")
        print(f"account set-up: kill -9 landed {'mid-flight' if mid_flight else 'after completion'}")
        await asyncio.to_thread(worker_proc.start)
        customer = await wait_stripe_customer(pool, account_id, within=120)
        assert await stripe_customers_of(stripe_api, account_id) == [customer]
        if mid_flight:
            break
    else:
        pytest.fail(f"the kill never landed while account set-up was running in {ATTEMPTS} attempts")
    assert account is not None

    for _ in range(ATTEMPTS):
        name = unique("crash-")
        resp = await crash_api.post("/cloud/namespaces", headers=account.headers,
                                    json={"spec": {"name": name, "retentionDays": 4}})
        assert resp.status == 202, await resp.text()
        created = await resp.json()
        ns = created["namespace"]
        mid_flight = await kill_when_running(temporal_client, create_workflow_id(ns), worker_proc)
        figures.add("faults injected")
        print(f"namespace provisioning: kill -9 landed {'mid-flight' if mid_flight else 'after completion'}")
        await asyncio.to_thread(worker_proc.start)
        op = await wait_operation(crash_api, account.headers, created["asyncOperation"]["id"], within=180)
        assert op.failure_reason == "" and op.state == op.STATE_FULFILLED
        on_server = await server_namespaces_named(temporal_client, name)
        assert on_server == [ns]
        assert await pool.fetchval("SELECT state FROM namespaces WHERE namespace = $1", ns) == "active"
        owners = await pool.fetch("SELECT account_id FROM namespace_ownership WHERE namespace = $1", ns)
        assert [r["account_id"] for r in owners] == [account.id]
        if mid_flight:
            break
    else:
        pytest.fail(f"the kill never landed while provisioning was running in {ATTEMPTS} attempts")


async def server_namespaces_named(client: Client, name: str) -> list[str]:
    """Every namespace on the Temporal server whose name starts with ``name`` (deleted ones included)."""
    found: list[str] = []
    token = b""
    while True:
        page = await client.workflow_service.list_namespaces(ListNamespacesRequest(page_size=100,
                                                                                   next_page_token=token))
        found += [n.namespace_info.name for n in page.namespaces if n.namespace_info.name.startswith(name)]
        token = page.next_page_token
        if not token:
            return found
