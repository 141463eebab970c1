"""Tenant isolation enforced by the Temporal server itself (default authorizer, default JWT claim mapper, the API's
JWKS), on the public frontend, for every class of data-plane call.

Two tenants A and B get namespaces and tokens through the real API. The matrix sends each call class to B's
namespace with A's token, and to A's namespace with no token, an expired token and a token signed by a key the
server does not trust: the server must refuse every one. A's own calls succeed through the Python SDK with its
token, a real worker polling included. Calls only the control plane may make (namespace update, search
attributes, listing namespaces) are refused even on A's own namespace.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import jwt as pyjwt
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import UpdateNamespaceInfo
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.schedule.v1 import Schedule
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    CreateScheduleRequest,
    DescribeNamespaceRequest,
    DescribeScheduleRequest,
    DescribeTaskQueueRequest,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
    ListNamespacesRequest,
    ListSchedulesRequest,
    ListWorkflowExecutionsRequest,
    PollActivityTaskQueueRequest,
    PollWorkflowTaskQueueRequest,
    QueryWorkflowRequest,
    RegisterNamespaceRequest,
    ResetWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
    TerminateWorkflowExecutionRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleSpec, WorkflowExecutionStatus
from temporalio.client import Schedule as ClientSchedule
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from api import jwt
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique
from tests.figures import Figures

REFUSED = {RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED}


@workflow.defn(name="IsolationProbe", sandboxed=False)  # defined in a test module, which the sandbox refuses
class IsolationProbe:
    """Waits for a signal; answers a query with what it has seen."""

    def __init__(self) -> None:
        self._seen: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: "done" in self._seen)
        return self._seen

    @workflow.signal
    def note(self, value: str) -> None:
        self._seen.append(value)

    @workflow.query
    def seen(self) -> list[str]:
        return self._seen


@dataclass
class Tenant:
    account: TestAccount
    namespace: str
    token: str


@dataclass
class Tenants:
    a: Tenant
    b: Tenant
    b_workflow_id: str
    b_schedule_id: str


async def _token(api: TestClient, tenant_account: TestAccount, namespace: str, **body: str) -> str:
    resp = await api.post(f"/cloud/namespaces/{namespace}/token", headers=tenant_account.headers, json=body)
    answer = await resp.json()
    assert resp.status == 200, answer
    return str(answer["token"])


@pytest_asyncio.fixture(scope="module")
async def tenants(api: TestClient, worker: None, operator_headers: dict[str, str],
                  temporal_server: harness.TemporalServer) -> Tenants:
    made = []
    for prefix in ("isoa", "isob"):
        account = await create_account(api, operator_headers, prefix=prefix)
        namespace, _ = await create_namespace(api, account, unique("orders"))
        made.append(Tenant(account, namespace, await _token(api, account, namespace)))
    a, b = made
    # Something of B's to reach for: a running workflow and a schedule, made through the platform's own door.
    admin_b = await Client.connect(temporal_server.address, namespace=b.namespace)
    wf_id = "b-private-" + uuid.uuid4().hex[:6]
    await admin_b.start_workflow("IsolationProbe", id=wf_id, task_queue="b-queue")
    schedule_id = "b-schedule-" + uuid.uuid4().hex[:6]
    await admin_b.create_schedule(schedule_id, ClientSchedule(
        action=ScheduleActionStartWorkflow("IsolationProbe", id="b-scheduled", task_queue="b-queue"),
        spec=ScheduleSpec(intervals=[]), ))
    return Tenants(a, b, wf_id, schedule_id)


def _calls(client: Client, namespace: str, workflow_id: str, schedule_id: str
           ) -> dict[str, Callable[[], Awaitable[object]]]:
    """One raw gRPC call per class of data-plane call, aimed at ``namespace``."""
    ws, ops = client.workflow_service, client.operator_service
    execution = WorkflowExecution(workflow_id=workflow_id)
    queue = TaskQueue(name="b-queue")
    return {
        "start": lambda: ws.start_workflow_execution(StartWorkflowExecutionRequest(
            namespace=namespace, workflow_id="intruder-" + uuid.uuid4().hex[:6],
            workflow_type=WorkflowType(name="IsolationProbe"), task_queue=queue, request_id=str(uuid.uuid4()))),
        "describe": lambda: ws.describe_workflow_execution(DescribeWorkflowExecutionRequest(
            namespace=namespace, execution=execution)),
        "list": lambda: ws.list_workflow_executions(ListWorkflowExecutionsRequest(namespace=namespace)),
        "count": lambda: ws.count_workflow_executions(CountWorkflowExecutionsRequest(namespace=namespace)),
        "query": lambda: ws.query_workflow(QueryWorkflowRequest(
            namespace=namespace, execution=execution, query=WorkflowQuery(query_type="seen"))),
        "signal": lambda: ws.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, signal_name="note", request_id=str(uuid.uuid4()))),
        "terminate": lambda: ws.terminate_workflow_execution(TerminateWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, reason="intruder")),
        "reset": lambda: ws.reset_workflow_execution(ResetWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, workflow_task_finish_event_id=3,
            request_id=str(uuid.uuid4()))),
        "history": lambda: ws.get_workflow_execution_history(GetWorkflowExecutionHistoryRequest(
            namespace=namespace, execution=execution)),
        "schedule create": lambda: ws.create_schedule(CreateScheduleRequest(
            namespace=namespace, schedule_id="intruder-" + uuid.uuid4().hex[:6], schedule=Schedule(),
            request_id=str(uuid.uuid4()))),
        "schedule list": lambda: ws.list_schedules(ListSchedulesRequest(namespace=namespace)),
        "schedule describe": lambda: ws.describe_schedule(DescribeScheduleRequest(
            namespace=namespace, schedule_id=schedule_id)),
        "task queue describe": lambda: ws.describe_task_queue(DescribeTaskQueueRequest(
            namespace=namespace, task_queue=queue)),
        "namespace describe": lambda: ws.describe_namespace(DescribeNamespaceRequest(namespace=namespace)),
        "namespace update": lambda: ws.update_namespace(UpdateNamespaceRequest(
            namespace=namespace, update_info=UpdateNamespaceInfo(description="taken over"))),
        "search attributes add": lambda: ops.add_search_attributes(AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={"Intruder": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD})),
        "search attributes list": lambda: ops.list_search_attributes(ListSearchAttributesRequest(
            namespace=namespace)),
        "poll workflow tasks": lambda: ws.poll_workflow_task_queue(PollWorkflowTaskQueueRequest(
            namespace=namespace, task_queue=queue, identity="intruder"), timeout=timedelta(seconds=5)),
        "poll activity tasks": lambda: ws.poll_activity_task_queue(PollActivityTaskQueueRequest(
            namespace=namespace, task_queue=queue, identity="intruder"), timeout=timedelta(seconds=5)),
    }


async def _status(call: Callable[[], Awaitable[object]]) -> RPCStatusCode | None:
    """None when the call succeeded, else the gRPC status it failed with."""
    try:
        await call()
        return None
    except RPCError as err:
        return err.status


def _foreign_token(settings: Settings, namespace: str) -> str:
    """A well-formed token for ``namespace`` under the platform's key id, signed by a key nobody trusts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"sub": "forger", "iss": jwt.ISSUER, "iat": now, "nbf": now, "exp": now + 600,
              "permissions": [f"{namespace}:admin"]}
    return pyjwt.encode(claims, key, algorithm=jwt.ALGORITHM, headers={"kid": jwt.signing_key(settings).kid})


async def _public(server: harness.TemporalServer, namespace: str, token: str | None) -> Client:
    """A tenant's client on the public door, carrying ``token`` on every call.

    It connects without one and takes the token afterwards: the server refuses a bad token on the SDK's very
    first call (GetSystemInfo), and each call of the matrix is to reach the server on its own.
    """
    client = await Client.connect(server.public_address, namespace=namespace, tls=False)
    client.api_key = token
    return client


async def test_the_server_refuses_every_cross_tenant_and_unauthenticated_call(
        tenants: Tenants, settings: Settings, temporal_server: harness.TemporalServer, figures: Figures) -> None:
    a, b = tenants.a, tenants.b
    expired, _ = jwt.issue(settings, account_id=a.account.id, namespace=a.namespace, now=time.time() - 7200)
    wrong_role_for_b, _ = jwt.issue(settings, account_id=a.account.id, namespace=a.namespace, role="read")
    callers = {
        "A's token on B": (a.token, b.namespace),
        "A's read token on B": (wrong_role_for_b, b.namespace),
        "no token on B": (None, b.namespace),
        "no token on A": (None, a.namespace),
        "expired token on A": (expired, a.namespace),
        "foreign-signed token on A": (_foreign_token(settings, a.namespace), a.namespace),
    }
    wrong: list[str] = []
    cells = 0
    for who, (token, namespace) in callers.items():
        client = await _public(temporal_server, namespace, token)
        for what, call in _calls(client, namespace, tenants.b_workflow_id, tenants.b_schedule_id).items():
            cells += 1
            status = await _status(call)
            if status not in REFUSED:
                wrong.append(f"{who}: {what} answered {status.name if status else 'OK'}")
    # B's workflow and schedule are untouched: still running, never signalled.
    admin_b = await Client.connect(temporal_server.address, namespace=b.namespace)
    desc = await admin_b.get_workflow_handle(tenants.b_workflow_id).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    history = [e async for e in admin_b.get_workflow_handle(tenants.b_workflow_id).fetch_history_events()]
    assert not any(e.HasField("workflow_execution_signaled_event_attributes") for e in history)
    figures.add("isolation cells checked", cells)
    figures.add("isolation cells refused as expected", cells - len(wrong))
    assert not wrong, "\n".join(wrong)


async def test_a_tenant_runs_its_own_namespace_with_its_token(
        tenants: Tenants, temporal_server: harness.TemporalServer, figures: Figures) -> None:
    a = tenants.a
    client = await _public(temporal_server, a.namespace, a.token)
    queue = "a-queue-" + uuid.uuid4().hex[:6]
    async with Worker(client, task_queue=queue, workflows=[IsolationProbe]):
        handle = await client.start_workflow(IsolationProbe.run, id="a-" + uuid.uuid4().hex[:6], task_queue=queue)
        await handle.signal(IsolationProbe.note, "hello")
        assert await handle.query(IsolationProbe.seen) == ["hello"]
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        events = [e async for e in handle.fetch_history_events()]
        assert any(e.HasField("workflow_execution_signaled_event_attributes") for e in events)
        # Reset to the first completed workflow task: a new run of the same workflow, the signal re-applied.
        first_task_done = next(e.event_id for e in events if e.HasField("workflow_task_completed_event_attributes"))
        reset = await client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
            namespace=a.namespace, workflow_execution=WorkflowExecution(workflow_id=handle.id),
            workflow_task_finish_event_id=first_task_done, request_id=str(uuid.uuid4())))
        assert reset.run_id
        await client.get_workflow_handle(handle.id).signal(IsolationProbe.note, "done")
        assert "done" in await client.get_workflow_handle(handle.id).result()
        other = await client.start_workflow(IsolationProbe.run, id="a-" + uuid.uuid4().hex[:6], task_queue=queue)
        await other.terminate("by its owner")
        queue_info = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=a.namespace, task_queue=TaskQueue(name=queue)))
        assert queue_info.pollers, "the tenant's worker polls with its token"
    listed = [w.id async for w in client.list_workflows()]
    assert handle.id in listed and tenants.b_workflow_id not in listed
    schedule_id = "a-schedule-" + uuid.uuid4().hex[:6]
    schedule = await client.create_schedule(schedule_id, ClientSchedule(
        action=ScheduleActionStartWorkflow("IsolationProbe", id="a-scheduled", task_queue=queue),
        spec=ScheduleSpec(intervals=[])))
    assert (await schedule.describe()).id == schedule_id
    await client.workflow_service.list_schedules(ListSchedulesRequest(namespace=a.namespace))
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=a.namespace))
    figures.add("isolation cells checked", 11)
    figures.add("isolation cells refused as expected", 11)


async def test_a_probe_cannot_tell_an_absent_namespace_from_another_tenants(
        tenants: Tenants, temporal_server: harness.TemporalServer, figures: Figures) -> None:
    """Every call class answers a guessed name that does not exist exactly as it answers another tenant's real
    namespace, and neither answer names the other tenant: nothing confirms that a name exists."""
    client = await _public(temporal_server, tenants.a.namespace, tenants.a.token)
    absent = unique("nosuch") + "." + tenants.b.account.id

    async def answer(call: Callable[[], Awaitable[object]]) -> tuple[str, str]:
        try:
            await call()
            return "OK", ""
        except RPCError as err:
            return err.status.name, err.message

    on_absent = {what: await answer(call) for what, call in
                 _calls(client, absent, tenants.b_workflow_id, tenants.b_schedule_id).items()}
    on_other = {what: await answer(call) for what, call in
                _calls(client, tenants.b.namespace, tenants.b_workflow_id, tenants.b_schedule_id).items()}
    differ = {what: (on_absent[what], on_other[what]) for what in on_absent if on_absent[what] != on_other[what]}
    figures.set("existence probes: call classes that tell absent from another tenant's", len(differ))
    assert not differ, differ
    assert all(tenants.b.account.id not in message for _, message in on_other.values())


async def test_only_the_control_plane_changes_or_lists_namespaces(
        tenants: Tenants, temporal_server: harness.TemporalServer) -> None:
    a = tenants.a
    client = await _public(temporal_server, a.namespace, a.token)
    refused = {
        "update own namespace": client.workflow_service.update_namespace(UpdateNamespaceRequest(
            namespace=a.namespace, update_info=UpdateNamespaceInfo(description="mine"))),
        "add search attribute": client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=a.namespace, search_attributes={"Mine": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD})),
        "list namespaces": client.workflow_service.list_namespaces(ListNamespacesRequest()),
        "register namespace": client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=unique("squat") + "." + tenants.b.account.id,
            workflow_execution_retention_period=Duration(seconds=86400))),
    }
    for what, call in refused.items():
        with pytest.raises(RPCError) as err:
            await call
        assert err.value.status in REFUSED, f"{what}: {err.value.status.name}"
        assert tenants.b.namespace not in err.value.message


async def test_a_revoked_key_mints_no_token_and_roles_narrow_tokens(
        tenants: Tenants, api: TestClient, temporal_server: harness.TemporalServer) -> None:
    a = tenants.a
    resp = await api.post("/cloud/api-keys", headers=a.account.headers, json={"spec": {"displayName": "ci"}})
    created = await resp.json()
    assert resp.status in (200, 201), created
    second = {"Authorization": f"Bearer {created['token']}"}
    assert (await api.post(f"/cloud/namespaces/{a.namespace}/token", headers=second)).status == 200
    assert (await api.delete(f"/cloud/api-keys/{created['keyId']}", headers=a.account.headers)).status == 200
    revoked = await api.post(f"/cloud/namespaces/{a.namespace}/token", headers=second)
    assert revoked.status == 401, await revoked.text()
    assert "token" not in await revoked.json()

    bad = await api.post(f"/cloud/namespaces/{a.namespace}/token", headers=a.account.headers, json={"role": "admin"})
    assert bad.status == 400, await bad.text()
    resp = await api.post(f"/cloud/namespaces/{a.namespace}/token", headers=a.account.headers, json={"role": "read"})
    answer = await resp.json()
    assert answer["role"] == "read" and answer["address"] == temporal_server.public_address
    reader = await _public(temporal_server, a.namespace, answer["token"])
    await reader.workflow_service.list_workflow_executions(ListWorkflowExecutionsRequest(namespace=a.namespace))
    with pytest.raises(RPCError) as err:
        await reader.start_workflow("IsolationProbe", id="read-only-" + uuid.uuid4().hex[:6], task_queue="q")
    assert err.value.status in REFUSED


async def test_a_refreshed_token_replaces_the_old_one_on_a_live_client(
        tenants: Tenants, api: TestClient, settings: Settings, temporal_server: harness.TemporalServer) -> None:
    a = tenants.a
    soon_expired, _ = jwt.issue(settings, account_id=a.account.id, namespace=a.namespace, ttl_seconds=2)
    client = await _public(temporal_server, a.namespace, soon_expired)
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=a.namespace))
    await asyncio.sleep(3)
    with pytest.raises(RPCError):
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=a.namespace))
    client.api_key = await _token(api, a.account, a.namespace)
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=a.namespace))
