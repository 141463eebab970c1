"""Helpers other tests may import: accounts and namespaces made through the real API, operations awaited."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import CreateNamespaceResponse, GetAsyncOperationResponse
from temporalio.api.cloud.operation.v1 import AsyncOperation

from launcher import procs


@dataclass(frozen=True)
class TestAccount:
    """An account made through ``POST /admin/accounts``, with its first API key."""

    __test__ = False  # not a test class for pytest

    id: str
    token: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique(prefix: str) -> str:
    """A name no other test module uses (all modules share one Temporal server)."""
    return f"{prefix}{secrets.token_hex(4)}"


async def create_account(api: TestClient, operator_headers: dict[str, str], *, prefix: str = "acct",
                         plan: str = "essentials", email: str | None = None) -> TestAccount:
    """Create an account through the API and return its id and first API key."""
    account_id = unique(prefix)
    resp = await api.post("/admin/accounts", headers=operator_headers, json={
        "id": account_id, "name": f"Test {account_id}", "email": email or f"{account_id}@example.com", "plan": plan})
    body = await resp.json()
    assert resp.status == 201, body
    return TestAccount(id=body["account"]["id"], token=body["apiKey"]["token"], key_id=body["apiKey"]["id"])


async def wait_stripe_customer(pool: asyncpg.Pool, account_id: str, within: float = 60) -> str:
    """Poll until the account's set-up workflow recorded its Stripe customer."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        found = await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
        if found:
            return str(found)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no Stripe customer recorded for {account_id} after {within}s")


async def wait_operation(api: TestClient, headers: dict[str, str], operation_id: str,
                         within: float = 90) -> AsyncOperation:
    """Poll ``GET /cloud/operations/{id}`` until the operation is finished; returns it parsed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        resp = await api.get(f"/cloud/operations/{operation_id}", headers=headers)
        assert resp.status == 200, await resp.text()
        op = Parse(await resp.text(), GetAsyncOperationResponse()).async_operation
        if op.state not in (AsyncOperation.STATE_PENDING, AsyncOperation.STATE_IN_PROGRESS):
            return op
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"operation {operation_id} still {AsyncOperation.State.Name(op.state)}: "
                                 f"{await _pending_detail(api, operation_id)}")
        await asyncio.sleep(0.2)


async def create_namespace(api: TestClient, account: TestAccount, name: str, *, retention_days: int = 7,
                           wait: bool = True) -> tuple[str, AsyncOperation]:
    """``POST /cloud/namespaces``; returns the namespace id and (if ``wait``) the finished operation."""
    resp = await api.post("/cloud/namespaces", headers=account.headers,
                          json={"spec": {"name": name, "retentionDays": retention_days}})
    assert resp.status == 202, await resp.text()
    created = Parse(await resp.text(), CreateNamespaceResponse())
    op = created.async_operation
    if wait:
        op = await wait_operation(api, account.headers, op.id)
    return created.namespace, op


async def _pending_detail(api: TestClient, operation_id: str) -> str:
    """What the operation's workflow is waiting on (for the failure message of a test)."""
    from api.appkeys import POOL, TEMPORAL

    row = await api.app[POOL].fetchrow("SELECT workflow_id, run_id FROM async_operations WHERE id = $1", operation_id)
    info = await api.app[TEMPORAL].get_workflow_handle(row["workflow_id"], run_id=row["run_id"]).describe()
    return "; ".join(f"{p.activity_type.name} attempt {p.attempt}: {p.last_failure.message}"
                     for p in info.raw_description.pending_activities) or "no pending activity"


def describe_on_server(address: str, namespace: str) -> dict[str, Any] | None:
    """``temporal operator namespace describe`` as JSON, or None when the server does not know the namespace."""
    result = subprocess.run(
        [procs.binary("temporal"), "operator", "namespace", "describe", "--namespace", namespace,
         "--address", address, "--output", "json"],
        capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        if "not found" in (result.stderr + result.stdout).lower():
            return None
        raise AssertionError(f"temporal CLI failed: {result.stderr}")
    described: dict[str, Any] = json.loads(result.stdout)
    return described
