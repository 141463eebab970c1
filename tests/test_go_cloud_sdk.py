"""Temporal's Go Cloud SDK (``go.temporal.io/cloud-sdk``, its ``cloudclient`` package) manages this platform through
the Cloud Ops API over gRPC, unchanged.

``tests/go_cloud_sdk`` is a small Go program on the SDK (pinned by its go.mod and go.sum); ``./deploy.sh local``
builds it into the Go cache (``launcher/gobuild.py``), nothing is built or downloaded here. It creates, lists, updates
and deletes a namespace, makes a service account's API key and disables and deletes it, adds and deletes a user with
access to the namespace, and checks the refusals (a stale ``resource_version``, a missing namespace, a disabled key).
At its checkpoints it waits while this test reads the platform's own state: the Temporal server, the JSON API and
Postgres.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from launcher import gobuild
from tcloud.settings import Settings
from tests import cloud_support
from tests.accounts_fixtures import TestAccount, create_account, describe_on_server, unique

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

DAY = 86400
SDK = "go.temporal.io/cloud-sdk v0.23.0"
STEPS = ["GetCurrentIdentity", "CreateNamespace", "GetAsyncOperation",
         "CreateNamespace (retry, same async_operation_id)", "GetNamespaces", "GetNamespace", "UpdateNamespace",
         "CreateServiceAccount", "CreateApiKey", "GetApiKeys", "UpdateApiKey (disable)", "DeleteApiKey", "CreateUser",
         "GetUsers", "DeleteUser", "DeleteServiceAccount", "DeleteNamespace"]


@pytest.fixture(scope="module")
def client_binary() -> Path:
    """The Go program as ``./deploy.sh local`` built it for the current sources (never built here)."""
    path = gobuild.local_binary_path(gobuild.GO_CLOUD_SDK_CLIENT)
    if not path.exists():
        pytest.fail(f"{path} is missing: ./deploy.sh local builds the Go Cloud SDK client from tests/go_cloud_sdk "
                    "(or run: .venv/bin/python -m launcher.gobuild)")
    return path


class GoClient:
    """The Go program running with ``-pause``: its JSON lines one by one, and the go-ahead after a checkpoint."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=300)
        if not raw:
            await self.process.wait()
            assert self.process.stderr is not None
            stderr = (await self.process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"the Go client ended ({self.process.returncode}) after {self.lines}:\n{stderr}")
        line: dict[str, Any] = json.loads(raw)
        self.lines.append(line)
        assert line.get("ok", True), f"the Go client observed a mismatch: {line}"
        return line

    async def checkpoint(self, name: str) -> dict[str, Any]:
        line = await self.next()
        assert line.get("checkpoint") == name, f"expected checkpoint {name}, got {line}"
        return line

    async def go_on(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"\n")
        await self.process.stdin.drain()


async def json_get(app: TestClient, path: str, account: TestAccount) -> tuple[int, Any]:
    resp = await app.get(path, headers=account.headers)
    return resp.status, await resp.json()


async def test_the_go_cloud_sdk_manages_namespaces_api_keys_and_users(
        client_binary: Path, cloud_app: TestClient, target: str, operator_headers: dict[str, str],
        settings: Settings, pool: asyncpg.Pool) -> None:
    account = await create_account(cloud_app, operator_headers, prefix="gosdk")
    name = unique("gosdk-")
    process = await asyncio.create_subprocess_exec(
        str(client_binary), "-endpoint", target, "-name", name, "-region", settings.cloud_region, "-pause",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEMPORAL_CLOUD_API_KEY": account.token})
    go = GoClient(process)
    try:
        # The namespace exists on the Temporal server, with the retention the SDK's update set.
        at = await go.checkpoint("namespace-updated")
        ns = at["namespace"]
        assert ns == f"{name}.{account.id}"
        described = describe_on_server(settings.temporal_address, ns)
        assert described is not None, f"{ns} is not on the Temporal server"
        assert int(float(described["config"]["workflowExecutionRetentionTtl"].rstrip("s"))) // DAY == 5
        status, body = await json_get(cloud_app, f"/cloud/namespaces/{ns}", account)
        assert (status, body["namespace"]["spec"]["retentionDays"]) == (200, 5), body
        row = await pool.fetchrow("SELECT state, retention_days FROM namespaces WHERE namespace = $1", ns)
        assert row is not None and (row["state"], row["retention_days"]) == ("active", 5)
        await go.go_on()

        # The service account's key is disabled, and the platform refuses it on the JSON door too.
        at = await go.checkpoint("key-disabled")
        key_id = at["key_id"]
        status, body = await json_get(cloud_app, f"/cloud/api-keys/{key_id}", account)
        assert (status, body["apiKey"]["spec"].get("disabled")) == (200, True), body
        key = await pool.fetchrow("SELECT disabled, revoked_at, owner_id FROM api_keys WHERE id = $1", key_id)
        assert key is not None and key["disabled"] and key["revoked_at"] is None
        await go.go_on()

        # The user exists with write access to the namespace.
        at = await go.checkpoint("user-created")
        user_id = at["user_id"]
        status, body = await json_get(cloud_app, f"/cloud/users/{user_id}", account)
        assert status == 200, body
        assert body["user"]["spec"]["email"] == at["email"]
        assert body["user"]["spec"]["access"]["namespaceAccesses"][ns]["permission"] == "PERMISSION_WRITE", body
        await go.go_on()

        summary = await go.next()
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert summary["ok"] is True and summary["steps"] == STEPS, summary
    assert summary["api_version"].startswith("v"), "the SDK sends its own semver API version"
    assert summary["stale_update"]["code"] == "FailedPrecondition" and "stale" in summary["stale_update"]["message"]
    assert summary["missing_namespace"]["code"] == "NotFound"
    assert summary["disabled_key_call"]["code"] == "Unauthenticated"
    assert summary["retention_days"] == 5
    assert summary["grpc_address"] == settings.temporal_public_address
    assert summary["api_key_id"] == key_id and summary["user_id"] == user_id

    # Everything the SDK deleted is gone: from the Temporal server, the JSON API and Postgres.
    assert describe_on_server(settings.temporal_address, ns) is None, f"{ns} is still on the Temporal server"
    assert (await json_get(cloud_app, f"/cloud/namespaces/{ns}", account))[0] == 404
    assert await pool.fetchval("SELECT state FROM namespaces WHERE namespace = $1", ns) == "deleted"
    assert (await json_get(cloud_app, f"/cloud/api-keys/{key_id}", account))[0] == 404
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", key_id) is True
    assert (await json_get(cloud_app, f"/cloud/users/{user_id}", account))[0] == 404
    gone = await pool.fetch("SELECT id, state FROM identities WHERE id = ANY($1::text[])",
                            [user_id, summary["service_account_id"]])
    assert {(r["id"], r["state"]) for r in gone} == {(user_id, "deleted"), (summary["service_account_id"], "deleted")}


def test_the_client_is_pinned_and_its_build_is_keyed_by_its_sources(tmp_path: Path) -> None:
    module = gobuild.GO_CLOUD_SDK_CLIENT
    assert SDK in (module.directory / "go.mod").read_text()
    assert (module.directory / "go.sum").is_file() and not (module.directory / "vendor").exists()
    copy = gobuild.LocalGoModule(module.name, tmp_path / "module")
    shutil.copytree(module.directory, copy.directory)
    assert copy.source_hash() == module.source_hash()
    for name in ("main.go", "go.mod", "go.sum"):
        original = (copy.directory / name).read_text()
        (copy.directory / name).write_text(original + "\n")
        assert copy.source_hash() != module.source_hash(), f"a change to {name} must build the client again"
        (copy.directory / name).write_text(original)
    (copy.directory / "more.go").write_text("package main\n")
    assert copy.source_hash() != module.source_hash()
