"""Namespaces end to end on the real parts: API → workflow on the worker → Temporal server, Postgres rows."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import (
    GetNamespaceResponse,
    GetNamespacesResponse,
    UpdateNamespaceResponse,
)
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.resource.v1 import ResourceState
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.worker import Replayer

from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.settings import Settings
from tests.accounts_fixtures import (
    TestAccount,
    create_account,
    create_namespace,
    describe_on_server,
    unique,
    wait_operation,
)
from workflows.namespaces import (
    CreateNamespaceWorkflow,
    DeleteNamespaceWorkflow,
    UpdateNamespaceWorkflow,
    create_workflow_id,
    delete_workflow_id,
    update_workflow_id,
)

FULFILLED = AsyncOperation.STATE_FULFILLED
DAY = 86400


def retention_seconds(described: dict) -> int:  # type: ignore[type-arg]
    ttl = described["config"]["workflowExecutionRetentionTtl"]  # protobuf JSON Duration, e.g. "259200s"
    return int(float(ttl.rstrip("s")))


@pytest.fixture(scope="module")
async def account(api: TestClient, operator_headers: dict[str, str], worker: None) -> TestAccount:
    return await create_account(api, operator_headers, prefix="ns")


async def test_create_update_delete_reach_the_server(api: TestClient, account: TestAccount, settings: Settings,
                                                     pool: asyncpg.Pool) -> None:
    ns, op = await create_namespace(api, account, unique("orders-"), retention_days=3)
    assert op.state == FULFILLED, op.failure_reason
    described = describe_on_server(settings.temporal_address, ns)
    assert described is not None
    assert retention_seconds(described) == 3 * DAY
    assert described["namespaceInfo"]["data"]["tcloud-account"] == account.id

    resp = await api.get(f"/cloud/namespaces/{ns}", headers=account.headers)
    got = Parse(await resp.text(), GetNamespaceResponse()).namespace
    assert (got.namespace, got.spec.retention_days, got.state) == (ns, 3, ResourceState.RESOURCE_STATE_ACTIVE)
    owner = await pool.fetch("SELECT account_id, valid_to FROM namespace_ownership WHERE namespace = $1", ns)
    assert [(r["account_id"], r["valid_to"]) for r in owner] == [(account.id, None)]

    stale = got.resource_version
    resp = await api.post(f"/cloud/namespaces/{ns}", headers=account.headers,
                          json={"spec": {"name": got.spec.name, "retentionDays": 5}, "resourceVersion": stale})
    assert resp.status == 202, await resp.text()
    update = Parse(await resp.text(), UpdateNamespaceResponse()).async_operation
    assert (await wait_operation(api, account.headers, update.id)).state == FULFILLED
    assert retention_seconds(describe_on_server(settings.temporal_address, ns) or {}) == 5 * DAY
    resp = await api.get(f"/cloud/namespaces/{ns}", headers=account.headers)
    assert Parse(await resp.text(), GetNamespaceResponse()).namespace.spec.retention_days == 5
    resp = await api.post(f"/cloud/namespaces/{ns}", headers=account.headers,
                          json={"spec": {"retentionDays": 6}, "resourceVersion": stale})
    assert resp.status == 409, "a stale resourceVersion must be refused"

    resp = await api.delete(f"/cloud/namespaces/{ns}", headers=account.headers)
    assert resp.status == 202, await resp.text()
    op_id = (await resp.json())["asyncOperation"]["id"]
    assert (await wait_operation(api, account.headers, op_id)).state == FULFILLED
    assert describe_on_server(settings.temporal_address, ns) is None
    assert (await api.get(f"/cloud/namespaces/{ns}", headers=account.headers)).status == 404
    row = await pool.fetchrow("SELECT state, deleted_at FROM namespaces WHERE namespace = $1", ns)
    assert row["state"] == "deleted" and row["deleted_at"] is not None
    closed = await pool.fetchval(
        "SELECT count(*) FROM namespace_ownership WHERE namespace = $1 AND valid_to IS NOT NULL", ns)
    assert closed == 1


async def test_taken_name_answers_409_and_a_deleted_name_can_be_reused(api: TestClient, account: TestAccount,
                                                                        settings: Settings) -> None:
    name = unique("dup-")
    ns, op = await create_namespace(api, account, name)
    assert op.state == FULFILLED
    resp = await api.post("/cloud/namespaces", headers=account.headers, json={"spec": {"name": name}})
    assert resp.status == 409
    assert "already exists" in (await resp.json())["message"]
    resp = await api.delete(f"/cloud/namespaces/{ns}", headers=account.headers)
    assert (await wait_operation(api, account.headers, (await resp.json())["asyncOperation"]["id"])).state == FULFILLED
    again, op = await create_namespace(api, account, name, retention_days=2)
    assert (again, op.state) == (ns, FULFILLED)
    assert retention_seconds(describe_on_server(settings.temporal_address, ns) or {}) == 2 * DAY


async def test_list_pages_through_the_accounts_namespaces(api: TestClient, operator_headers: dict[str, str],
                                                          worker: None) -> None:
    owner = await create_account(api, operator_headers, prefix="list")
    names = sorted(unique(f"l{i}-") for i in range(3))
    for name in names:
        await create_namespace(api, owner, name, wait=False)
    seen: list[str] = []
    token = ""
    while True:
        resp = await api.get("/cloud/namespaces", headers=owner.headers, params={"pageSize": "2", "pageToken": token})
        page = Parse(await resp.text(), GetNamespacesResponse())
        seen += [n.spec.name for n in page.namespaces]
        token = page.next_page_token
        if not token:
            break
    assert seen == names


async def test_operation_failure_is_reported_with_its_reason(api: TestClient, account: TestAccount,
                                                            temporal_client: Client, pool: asyncpg.Pool) -> None:
    name = unique("squat-")
    # Someone registered the name on the server behind the platform's back, owned by nobody.
    await temporal_client.workflow_service.register_namespace(RegisterNamespaceRequest(
        namespace=f"{name}.{account.id}", workflow_execution_retention_period=Duration(seconds=DAY)))
    ns, op = await create_namespace(api, account, name)
    assert op.state == AsyncOperation.STATE_FAILED
    assert "not this account's" in op.failure_reason
    assert await pool.fetchval("SELECT state FROM namespaces WHERE namespace = $1", ns) == "failed"


async def test_quota_of_the_plan_is_enforced(api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                                             worker: None) -> None:
    full = await create_account(api, operator_headers, prefix="quota")  # essentials: 10 namespaces
    await pool.executemany(
        """INSERT INTO namespaces (namespace, name, account_id, state, retention_days)
           VALUES ($1, $2, $3, 'active', 7)""",
        [(f"q{i}.{full.id}", f"q{i}", full.id) for i in range(10)])
    resp = await api.post("/cloud/namespaces", headers=full.headers, json={"spec": {"name": "one-more"}})
    assert resp.status == 422
    assert "quota" in (await resp.json())["message"]


@pytest.mark.parametrize(("body", "needle"), [
    ({"spec": {"name": "a"}}, "2 to 39"),
    ({"spec": {"name": "x" * 40}}, "2 to 39"),
    ({"spec": {"name": "Orders"}}, "lowercase"),
    ({"spec": {"name": "1orders"}}, "begin with a letter"),
    ({"spec": {"name": "orders-"}}, "begin with a letter"),
    ({"spec": {"name": "ord--ers"}}, "single hyphens"),
    ({"spec": {"name": "ord_ers"}}, "begin with a letter"),
    ({"spec": {"name": "ord.ers"}}, "begin with a letter"),
    ({"spec": {}}, "spec.name is required"),
    ({"spec": {"name": "okname", "retentionDays": 91}}, "between 1 and 90"),
    ({"spec": {"name": "okname", "retentionDays": -1}}, "between 1 and 90"),
    ({"spec": {"name": "okname", "retentionDays": "abc"}}, "invalid"),
    ({"spec": {"name": 12}}, "invalid"),
    ({"spec": {"name": "okname"}, "surprise": 1}, "surprise"),
    ({"spec": {"name": "okname", "codecServer": {"endpoint": "https://x"}}}, "codecServer"),
    ({"spec": {"name": "okname"}, "tags": {"a": "B"}}, "tags"),
    ({"spec": {"name": "okname"}, "asyncOperationId": "a/b"}, "asyncOperationId"),
])
async def test_bad_create_requests_get_a_json_400(api: TestClient, account: TestAccount, body: dict,  # type: ignore[type-arg]
                                                  needle: str) -> None:
    resp = await api.post("/cloud/namespaces", headers=account.headers, json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["code"] == 400 and needle in answer["message"], answer


async def test_malformed_bodies_and_missing_auth(api: TestClient, account: TestAccount) -> None:
    resp = await api.post("/cloud/namespaces", headers=account.headers, data=b"{not json",
                          skip_auto_headers=("Content-Type",), )
    assert resp.status in (400, 415)
    resp = await api.post("/cloud/namespaces", headers={**account.headers, "Content-Type": "application/json"},
                          data=b"{not json")
    assert resp.status == 400 and (await resp.json())["message"] == "request body is not valid JSON"
    resp = await api.post("/cloud/namespaces", headers={**account.headers, "Content-Type": "application/json"},
                          data=b"[1]")
    assert resp.status == 400
    resp = await api.post("/cloud/namespaces", headers={**account.headers, "Content-Type": "text/plain"}, data=b"x")
    assert resp.status == 415
    resp = await api.post("/cloud/namespaces", headers={**account.headers, "Content-Type": "application/json"},
                          data=b'{"spec": {"name": "' + b"a" * 70_000 + b'"}}')
    assert resp.status == 413 and "code" in await resp.json()
    resp = await api.post("/cloud/namespaces", json={"spec": {"name": "okname"}})
    assert resp.status == 401 and "code" in await resp.json()
    resp = await api.get("/cloud/namespaces", headers={"Authorization": "Bearer tcsk_000000000000_nope"})
    assert resp.status == 401
    resp = await api.get("/cloud/namespaces", headers=account.headers, params={"pageSize": "zero"})
    assert resp.status == 400
    resp = await api.get("/cloud/operations/no-such-op", headers=account.headers)
    assert resp.status == 404
    for path in ("", "/update-tags", "/rename-custom-search-attribute"):  # a body naming another namespace
        resp = await api.post(f"/cloud/namespaces/some-ns.{account.id}{path}", headers=account.headers,
                              json={"namespace": f"other-ns.{account.id}"})
        assert resp.status == 400, path
        assert (await resp.json())["message"] == "namespace in the body differs from the path"


async def test_suspended_account_reads_but_cannot_change(api: TestClient, operator_headers: dict[str, str],
                                                         worker: None) -> None:
    tenant = await create_account(api, operator_headers, prefix="susp")
    ns, op = await create_namespace(api, tenant, unique("s-"))
    assert op.state == FULFILLED
    resp = await api.post(f"/admin/accounts/{tenant.id}/suspend", headers=operator_headers,
                          json={"reason": "unpaid invoice"})
    assert resp.status == 200 and (await resp.json())["status"] == "suspended"
    assert (await api.get(f"/cloud/namespaces/{ns}", headers=tenant.headers)).status == 200
    for resp in (
        await api.post("/cloud/namespaces", headers=tenant.headers, json={"spec": {"name": unique("t-")}}),
        await api.post(f"/cloud/namespaces/{ns}", headers=tenant.headers, json={"spec": {"retentionDays": 9}}),
        await api.delete(f"/cloud/namespaces/{ns}", headers=tenant.headers),
        await api.post(f"/cloud/namespaces/{ns}/token", headers=tenant.headers),
        await api.post("/cloud/api-keys", headers=tenant.headers, json={"spec": {"displayName": "x"}}),
    ):
        assert resp.status == 403, await resp.text()
    resp = await api.post(f"/admin/accounts/{tenant.id}/resume", headers=operator_headers)
    assert (await resp.json())["status"] == "active"
    resp = await api.post(f"/cloud/namespaces/{ns}/token", headers=tenant.headers)
    assert resp.status == 200


async def test_concurrent_creates_of_one_name_start_one_workflow(api: TestClient, account: TestAccount,
                                                                 pool: asyncpg.Pool) -> None:
    name = unique("race-")
    answers = await asyncio.gather(*(
        api.post("/cloud/namespaces", headers=account.headers, json={"spec": {"name": name}}) for _ in range(4)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [202, 409, 409, 409], statuses
    op_id = (await next(r for r in answers if r.status == 202).json())["asyncOperation"]["id"]
    assert (await wait_operation(api, account.headers, op_id)).state == FULFILLED
    assert await pool.fetchval("SELECT count(*) FROM async_operations WHERE resource = $1", f"{name}.{account.id}") == 1


async def test_provisioning_workflows_replay_deterministically(api: TestClient, account: TestAccount,
                                                               temporal_client: Client) -> None:
    ns, op = await create_namespace(api, account, unique("replay-"), retention_days=4)
    assert op.state == FULFILLED
    resp = await api.post(f"/cloud/namespaces/{ns}", headers=account.headers, json={"spec": {}})
    assert resp.status == 202
    assert (await wait_operation(api, account.headers, (await resp.json())["asyncOperation"]["id"])).state == FULFILLED
    resp = await api.get(f"/cloud/namespaces/{ns}", headers=account.headers)
    assert Parse(await resp.text(), GetNamespaceResponse()).namespace.spec.retention_days == 4, \
        "an update without retentionDays keeps the retention"
    resp = await api.delete(f"/cloud/namespaces/{ns}", headers=account.headers)
    assert (await wait_operation(api, account.headers, (await resp.json())["asyncOperation"]["id"])).state == FULFILLED
    replayer = Replayer(workflows=[CreateNamespaceWorkflow, UpdateNamespaceWorkflow, DeleteNamespaceWorkflow],
                        data_converter=DATA_CONVERTER)
    for workflow_id in (create_workflow_id(ns), update_workflow_id(ns, 2), delete_workflow_id(ns)):
        history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
        await replayer.replay_workflow(history)
