"""The Cloud Ops API over gRPC, driven by Temporal's own Python ``CloudOperationsClient`` against the real parts.

The API application runs its gRPC server (``create_app(..., cloud_api=True)``, as ``tcloud-api`` does) on a free
port, beside the real worker, Temporal server and Postgres of the session.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.json_format import Parse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateNamespaceRequest,
    DeleteApiKeyRequest,
    DeleteNamespaceRequest,
    GetAccountRequest,
    GetApiKeyRequest,
    GetApiKeysRequest,
    GetAsyncOperationRequest,
    GetCurrentIdentityRequest,
    GetNamespaceRequest,
    GetNamespaceResponse,
    GetNamespacesRequest,
    GetRegionsRequest,
    GetRegionsResponse,
    UpdateNamespaceRequest,
)
from temporalio.api.cloud.identity.v1 import ApiKeySpec
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.resource.v1 import ResourceState
from temporalio.client import CloudOperationsClient
from temporalio.service import RPCStatusCode

from api import cloud_grpc
from api.app import create_app
from api.appkeys import CLOUD_API
from api.errors import ApiError
from tcloud.settings import Settings
from tests import cloud_support
from tests.accounts_fixtures import TestAccount, create_account, describe_on_server, unique
from tests.cloud_support import cloud_client, finished, refused

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

DAY = 86400
FULFILLED = AsyncOperation.STATE_FULFILLED


account, ops = cloud_support.account_fixtures("grpc", version="2024-10-01")


def retention_days_on_server(settings: Settings, namespace: str) -> int:
    described = describe_on_server(settings.temporal_address, namespace)
    assert described is not None, f"{namespace} is not on the server"
    return int(float(described["config"]["workflowExecutionRetentionTtl"].rstrip("s"))) // DAY


# --- Namespaces, end to end ------------------------------------------------------------------------------------


async def test_create_get_list_update_delete_a_namespace(ops: CloudOperationsClient, account: TestAccount,
                                                         settings: Settings) -> None:
    cloud = ops.cloud_service
    name = unique("grpc-")
    created = await cloud.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=name, retention_days=3, regions=[settings.cloud_region])))
    ns = created.namespace
    assert ns == f"{name}.{account.id}"
    assert created.async_operation.operation_type == "CreateNamespace"
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    assert retention_days_on_server(settings, ns) == 3

    got = (await cloud.get_namespace(GetNamespaceRequest(namespace=ns))).namespace
    assert (got.namespace, got.spec.name, got.spec.retention_days) == (ns, name, 3)
    assert (got.state, list(got.spec.regions)) == (ResourceState.RESOURCE_STATE_ACTIVE, [settings.cloud_region])
    assert got.endpoints.grpc_address == settings.temporal_public_address
    listed = await cloud.get_namespaces(GetNamespacesRequest(name=name))
    assert [n.namespace for n in listed.namespaces] == [ns]

    stale = got.resource_version
    updated = await cloud.update_namespace(UpdateNamespaceRequest(
        namespace=ns, spec=NamespaceSpec(name=name, retention_days=5), resource_version=stale))
    assert (await finished(ops, updated.async_operation.id)).state == FULFILLED
    assert retention_days_on_server(settings, ns) == 5
    assert (await cloud.get_namespace(GetNamespaceRequest(namespace=ns))).namespace.spec.retention_days == 5
    err = await refused(cloud.update_namespace(UpdateNamespaceRequest(
        namespace=ns, spec=NamespaceSpec(retention_days=6), resource_version=stale)))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION and "stale" in err.message

    deleted = await cloud.delete_namespace(DeleteNamespaceRequest(namespace=ns))
    assert (await finished(ops, deleted.async_operation.id)).state == FULFILLED
    assert describe_on_server(settings.temporal_address, ns) is None
    err = await refused(cloud.get_namespace(GetNamespaceRequest(namespace=ns)))
    assert err.status == RPCStatusCode.NOT_FOUND


async def test_namespaces_page_with_page_size_and_token(cloud_app: TestClient, operator_headers: dict[str, str],
                                                        target: str) -> None:
    owner = await create_account(cloud_app, operator_headers, prefix="gpage")
    cloud = (await cloud_client(target, owner.token)).cloud_service
    names = sorted(unique(f"p{i}-") for i in range(3))
    for name in names:
        await cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=name, retention_days=1)))
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await cloud.get_namespaces(GetNamespacesRequest(page_size=2, page_token=token))
        pages.append([n.spec.name for n in page.namespaces])
        token = page.next_page_token
        if not token:
            break
    assert pages == [names[:2], names[2:]]
    err = await refused(cloud.get_namespaces(GetNamespacesRequest(page_size=1001)))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT


async def test_both_doors_are_one_implementation(ops: CloudOperationsClient, cloud_app: TestClient,
                                                 account: TestAccount) -> None:
    """What one door creates the other sees identically, and both refuse alike."""
    cloud = ops.cloud_service
    name = unique("both-")
    created = await cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=name, retention_days=2)))
    await finished(ops, created.async_operation.id)
    resp = await cloud_app.get(f"/cloud/namespaces/{created.namespace}", headers=account.headers)
    over_http = Parse(await resp.text(), GetNamespaceResponse())
    assert over_http == await cloud.get_namespace(GetNamespaceRequest(namespace=created.namespace))

    resp = await cloud_app.post("/cloud/namespaces", headers=account.headers, json={"spec": {"name": name}})
    assert resp.status == 409
    err = await refused(cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=name))))
    assert err.status == RPCStatusCode.ALREADY_EXISTS and err.message == (await resp.json())["message"]

    for bad in ("Bad_Name", "x"):
        resp = await cloud_app.post("/cloud/namespaces", headers=account.headers, json={"spec": {"name": bad}})
        err = await refused(cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=bad))))
        assert (resp.status, err.status) == (400, RPCStatusCode.INVALID_ARGUMENT)
        assert err.message == (await resp.json())["message"]
    err = await refused(cloud.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("far-"), regions=["aws-us-east-1"]))))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT and "one region" in err.message


async def test_async_operation_id_is_an_idempotency_key(ops: CloudOperationsClient, account: TestAccount) -> None:
    cloud = ops.cloud_service
    key = "create-" + secrets.token_hex(6)
    request = CreateNamespaceRequest(spec=NamespaceSpec(name=unique("idem-"), retention_days=1), async_operation_id=key)
    first = await cloud.create_namespace(request)
    again = await cloud.create_namespace(request)  # a retry of the same request: the same operation, nothing new
    assert (again.namespace, again.async_operation.id) == (first.namespace, key)
    assert again.async_operation.operation_type == "CreateNamespace"
    assert (await finished(ops, key)).state == FULFILLED
    other = CreateNamespaceRequest(spec=NamespaceSpec(name=unique("idem-")), async_operation_id=key)
    err = await refused(cloud.create_namespace(other))
    assert err.status == RPCStatusCode.ALREADY_EXISTS and key in err.message
    err = await refused(cloud.get_namespace(GetNamespaceRequest(namespace=f"{other.spec.name}.{account.id}")))
    assert err.status == RPCStatusCode.NOT_FOUND, "a refused request must reserve nothing"


# --- Who may call ----------------------------------------------------------------------------------------------


async def test_anonymous_and_wrong_keys_are_unauthenticated(target: str, account: TestAccount) -> None:
    wrong = account.token[:-4] + ("aaaa" if not account.token.endswith("aaaa") else "bbbb")
    for key in (None, wrong, "not-a-key-at-all"):
        cloud = (await cloud_client(target, key)).cloud_service
        for call in (cloud.get_namespaces(GetNamespacesRequest()), cloud.get_regions(GetRegionsRequest()),
                     cloud.get_users(message_factory.GetMessageClass(
                         cloud_grpc.DESCRIPTOR.methods_by_name["GetUsers"].input_type)())):
            err = await refused(call)
            assert err.status == RPCStatusCode.UNAUTHENTICATED, (key, err)


async def test_the_api_version_may_be_a_date_or_a_version_or_absent(target: str, account: TestAccount) -> None:
    for version in (None, "2024-10-01", "v0.3.0", "0.4.1-beta.1"):
        cloud = (await cloud_client(target, account.token, version=version)).cloud_service
        assert (await cloud.get_account(GetAccountRequest())).account.id == account.id
    for version in ("2024-13-01", "yesterday", "v1"):
        cloud = (await cloud_client(target, account.token, version=version)).cloud_service
        err = await refused(cloud.get_account(GetAccountRequest()))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT and "temporal-cloud-api-version" in err.message


async def test_another_accounts_namespace_and_operation_are_not_found(ops: CloudOperationsClient,
                                                                      cloud_app: TestClient, target: str,
                                                                      operator_headers: dict[str, str]) -> None:
    created = await ops.cloud_service.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("mine-"), retention_days=1)))
    await finished(ops, created.async_operation.id)
    ns = created.namespace
    intruder = await create_account(cloud_app, operator_headers, prefix="gother")
    theirs = (await cloud_client(target, intruder.token)).cloud_service
    for call in (theirs.get_namespace(GetNamespaceRequest(namespace=ns)),
                 theirs.update_namespace(UpdateNamespaceRequest(namespace=ns, spec=NamespaceSpec(retention_days=9))),
                 theirs.delete_namespace(DeleteNamespaceRequest(namespace=ns)),
                 theirs.get_async_operation(GetAsyncOperationRequest(async_operation_id=created.async_operation.id))):
        err = await refused(call)
        assert err.status == RPCStatusCode.NOT_FOUND, err
    assert ns not in [n.namespace for n in (await theirs.get_namespaces(GetNamespacesRequest())).namespaces]
    # Still there and unchanged for its owner.
    got = (await ops.cloud_service.get_namespace(GetNamespaceRequest(namespace=ns))).namespace
    assert (got.state, got.spec.retention_days) == (ResourceState.RESOURCE_STATE_ACTIVE, 1)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


async def test_every_other_method_answers_unimplemented(ops: CloudOperationsClient) -> None:
    others = [m for m in cloud_grpc.DESCRIPTOR.methods if m.name not in cloud_grpc.METHODS]
    assert len(others) > 40 and "GetUserGroups" in {m.name for m in others}
    for method in others:
        request = message_factory.GetMessageClass(method.input_type)()
        err = await refused(getattr(ops.cloud_service, _snake(method.name))(request))
        assert err.status == RPCStatusCode.UNIMPLEMENTED, (method.name, err)
        assert err.message == f"CloudService/{method.name} is not supported by this platform"


# --- The account, its region, identity and API keys ------------------------------------------------------------


async def test_account_region_identity_and_api_keys(ops: CloudOperationsClient, account: TestAccount, target: str,
                                                    settings: Settings, cloud_app: TestClient) -> None:
    cloud = ops.cloud_service
    got = (await cloud.get_account(GetAccountRequest())).account
    assert (got.id, got.state) == (account.id, ResourceState.RESOURCE_STATE_ACTIVE)
    regions = await cloud.get_regions(GetRegionsRequest())
    assert [r.id for r in regions.regions] == [settings.cloud_region]
    resp = await cloud_app.get("/cloud/regions", headers=account.headers)
    assert Parse(await resp.text(), GetRegionsResponse()) == regions

    made = await cloud.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(display_name="ci", description="grpc")))
    assert made.token and made.key_id
    listed = await cloud.get_api_keys(GetApiKeysRequest())
    assert {account.key_id, made.key_id} <= {k.id for k in listed.api_keys}
    # Keys made before users and service accounts, and an account's first key, belong to its admin service account.
    assert all(k.spec.owner_id == f"sa-{account.id}" for k in listed.api_keys)
    first_page = await cloud.get_api_keys(GetApiKeysRequest(page_size=1))
    assert len(first_page.api_keys) == 1 and first_page.next_page_token
    key = (await cloud.get_api_key(GetApiKeyRequest(key_id=made.key_id))).api_key
    assert (key.spec.display_name, key.spec.description) == ("ci", "grpc")

    with_new = (await cloud_client(target, made.token)).cloud_service
    identity = await with_new.get_current_identity(GetCurrentIdentityRequest())
    assert identity.principal_api_key.id == made.key_id
    await cloud.delete_api_key(DeleteApiKeyRequest(key_id=made.key_id))
    err = await refused(with_new.get_account(GetAccountRequest()))
    assert err.status == RPCStatusCode.UNAUTHENTICATED
    err = await refused(cloud.get_api_key(GetApiKeyRequest(key_id=made.key_id)))
    assert err.status == RPCStatusCode.NOT_FOUND
    err = await refused(cloud.delete_api_key(DeleteApiKeyRequest(key_id=account.key_id)))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION and "last active API key" in err.message


# --- One route table -------------------------------------------------------------------------------------------


def _http_rule(method_name: str) -> tuple[str, str]:
    rule = cloud_grpc.DESCRIPTOR.methods_by_name[method_name].GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    assert verb is not None
    return verb.upper(), re.sub(r"\{[^}]+\}", "{}", getattr(rule, verb))


def test_every_grpc_method_has_its_json_route_at_the_descriptors_http_path(settings: Settings) -> None:
    """The gRPC methods and the JSON routes are the same set, at the paths the service descriptor maps them to."""
    app = create_app(settings)
    routes = {(r.method, re.sub(r"\{[^}]+\}", "{}", r.resource.canonical)) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/cloud/")}
    implemented = {_http_rule(name) for name in cloud_grpc.METHODS}
    assert implemented <= routes, implemented - routes
    rules = {_http_rule(m.name): m.name for m in cloud_grpc.DESCRIPTOR.methods}
    json_only = sorted(rules[r] for r in routes if r in rules and rules[r] not in cloud_grpc.METHODS)
    assert json_only == [], json_only


# --- Health, shutdown, errors ----------------------------------------------------------------------------------


async def test_health_reports_serving_then_running_calls_finish_on_shutdown(settings: Settings,
                                                                           cloud_app: TestClient,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           account: TestAccount) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cloud_app.app[CLOUD_API].port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", cloud_grpc.SERVICE):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

    entered = asyncio.Event()

    async def slow_regions(call: Any, request: Any) -> Any:
        entered.set()
        await asyncio.sleep(1.5)
        return GetRegionsResponse()

    monkeypatch.setitem(cloud_grpc.METHODS, "GetRegions", slow_regions)
    server = await cloud_grpc.start(cloud_app.app, "127.0.0.1", 0)
    cloud = (await cloud_client(f"127.0.0.1:{server.port}", account.token)).cloud_service
    running = asyncio.create_task(cloud.get_regions(GetRegionsRequest()))
    await asyncio.wait_for(entered.wait(), 10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=cloud_grpc.SERVICE))
        assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(grace_seconds=10))
        assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
    assert await running == GetRegionsResponse(), "a call running at shutdown must finish within the grace"
    err = await refused(cloud.get_account(GetAccountRequest()))
    assert err.status == RPCStatusCode.UNAVAILABLE


async def test_a_taken_port_fails_the_start(cloud_app: TestClient) -> None:
    with pytest.raises(RuntimeError):
        await cloud_grpc.start(cloud_app.app, "127.0.0.1", cloud_app.app[CLOUD_API].port)


@pytest.mark.parametrize(("error", "code"), [
    (ApiError(400, "x"), grpc.StatusCode.INVALID_ARGUMENT),
    (ApiError(401, "x"), grpc.StatusCode.UNAUTHENTICATED),
    (ApiError(403, "x"), grpc.StatusCode.PERMISSION_DENIED),
    (ApiError(404, "x"), grpc.StatusCode.NOT_FOUND),
    (ApiError(409, "x"), grpc.StatusCode.FAILED_PRECONDITION),
    (ApiError(409, "x", exists=True), grpc.StatusCode.ALREADY_EXISTS),
    (ApiError(422, "x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ApiError(429, "x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ApiError(503, "x"), grpc.StatusCode.UNAVAILABLE),
    (ApiError(500, "x"), grpc.StatusCode.INTERNAL),
])
def test_api_errors_map_to_grpc_status_codes(error: ApiError, code: grpc.StatusCode) -> None:
    assert cloud_grpc.status_of(error) == code


async def test_repeated_wrong_keys_are_throttled_like_the_json_door(settings: Settings) -> None:
    strict = settings.model_copy(update={"cloud_api_port": 0, "auth_failure_limit": 2})
    async with TestClient(TestServer(create_app(strict, cloud_api=True))) as client:
        cloud = (await cloud_client(f"127.0.0.1:{client.app[CLOUD_API].port}", "tc_wrong_wrong")).cloud_service
        for _ in range(2):
            assert (await refused(cloud.get_account(GetAccountRequest()))).status == RPCStatusCode.UNAUTHENTICATED
        err = await refused(cloud.get_account(GetAccountRequest()))
        assert err.status == RPCStatusCode.RESOURCE_EXHAUSTED and "too many failed authentications" in err.message
        # The JSON door of the same process counts the same failures: both doors are one throttle.
        resp = await client.get("/cloud/account", headers={"Authorization": "Bearer tc_wrong_wrong"})
        assert resp.status == 429


def test_the_port_setting_is_on_by_default_and_empty_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCLOUD_CLOUD_API_PORT", raising=False)
    assert Settings().cloud_api_port == 3001
    monkeypatch.setenv("TCLOUD_CLOUD_API_PORT", "")
    assert Settings().cloud_api_port is None


def test_peer_addresses_are_read_for_the_throttle() -> None:
    assert cloud_grpc.peer_address("ipv4:127.0.0.1:50123") == "127.0.0.1"
    assert cloud_grpc.peer_address("ipv6:%5B::1%5D:50123") == "::1"
    assert cloud_grpc.peer_address("unix:/tmp/s") == "unix:/tmp/s"

