"""The Cloud Ops gRPC door called raw: any method of ``CloudService`` by its full name, with any request message or
raw bytes and any metadata, over a real ``grpc.aio`` channel; and tenants holding one of each resource the service
names and API keys of callers in every role. Used by the gRPC authorization matrix and the gRPC fuzzing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.api.cloud.billing.v1 import BillingReportSpec
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    CreateBillingReportRequest,
    CreateBillingReportResponse,
    CreateNamespaceRequest,
    CreateNamespaceResponse,
    CreateServiceAccountRequest,
    CreateServiceAccountResponse,
    CreateUserRequest,
    CreateUserResponse,
    DeleteApiKeyRequest,
    DeleteUserRequest,
    GetAsyncOperationRequest,
    GetAsyncOperationResponse,
    UpdateApiKeyRequest,
)
from temporalio.api.cloud.identity.v1 import (
    Access,
    AccountAccess,
    ApiKeySpec,
    NamespaceAccess,
    OwnerType,
    ServiceAccountSpec,
    UserSpec,
)
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation

from api import cloud_grpc
from api.app import create_app
from api.appkeys import CLOUD_API
from tcloud.settings import Settings
from tests.accounts_fixtures import TestAccount, create_account, unique

ROLES = {"admin": AccountAccess.ROLE_ADMIN, "developer": AccountAccess.ROLE_DEVELOPER,
         "finance_admin": AccountAccess.ROLE_FINANCE_ADMIN, "read": AccountAccess.ROLE_READ}


@pytest_asyncio.fixture(scope="module")
async def unthrottled_cloud_app(settings: Settings, worker: None) -> AsyncIterator[TestClient]:
    """The API application serving both doors (gRPC on ``app[CLOUD_API].port``), beside the real worker, with the
    failed-authentication throttle off: the matrix and the fuzzer send wrong keys by the hundred from one address."""
    app = create_app(settings.model_copy(update={"cloud_api_port": 0, "auth_failure_limit": 10**9}), cloud_api=True)
    async with TestClient(TestServer(app)) as client:
        yield client


@dataclass(frozen=True)
class Outcome:
    """What one call answered: its status code, the error's message, the serialized answer (empty on error)."""

    code: grpc.StatusCode
    message: str = ""
    answer: bytes = b""


def request_class(method: str) -> type[Message]:
    return message_factory.GetMessageClass(cloud_grpc.DESCRIPTOR.methods_by_name[method].input_type)


def response_class(method: str) -> type[Message]:
    return message_factory.GetMessageClass(cloud_grpc.DESCRIPTOR.methods_by_name[method].output_type)


def _serialized(request: Message | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def _kept(raw: bytes) -> bytes:
    return raw


class Door:
    """A real gRPC channel to the API's CloudService: any method, any request (a message or raw bytes)."""

    def __init__(self, target: str):
        self.target = target
        self.channel = grpc.aio.insecure_channel(target)

    async def close(self) -> None:
        await self.channel.close()

    async def call(self, method: str, request: Message | bytes, token: str | None = None,
                   metadata: Sequence[tuple[str, str]] = ()) -> Outcome:
        """Call ``method``; ``token`` goes as ``authorization: Bearer <token>`` (None: no authorization at all)."""
        sent = list(metadata)
        if token is not None:
            sent.append(("authorization", f"Bearer {token}"))
        stub = self.channel.unary_unary(f"/{cloud_grpc.SERVICE}/{method}", request_serializer=_serialized,
                                        response_deserializer=_kept)
        try:
            answer = await stub(request, metadata=sent, timeout=60)
        except grpc.aio.AioRpcError as err:
            return Outcome(err.code(), err.details() or "")
        return Outcome(grpc.StatusCode.OK, answer=answer)

    async def ok(self, method: str, request: Message, token: str) -> Message:
        """Call ``method``, which must succeed; its answer parsed."""
        outcome = await self.call(method, request, token)
        assert outcome.code == grpc.StatusCode.OK, (method, outcome)
        return response_class(method).FromString(outcome.answer)

    async def serving(self) -> bool:
        """Whether the standard health service says SERVING for CloudService."""
        answer = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=cloud_grpc.SERVICE), timeout=30)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def door_of(app: TestClient) -> Door:
    return Door(f"127.0.0.1:{app.app[CLOUD_API].port}")


PERMISSIONS = {"admin": NamespaceAccess.PERMISSION_ADMIN, "write": NamespaceAccess.PERMISSION_WRITE,
               "read": NamespaceAccess.PERMISSION_READ}


def role_access(role: str, namespaces: dict[str, str] | None = None) -> Access:
    """An ``Access`` of an account role and, per namespace, a permission (``admin``, ``write``, ``read``)."""
    return Access(account_access=AccountAccess(role=ROLES[role]), namespace_accesses={
        ns: NamespaceAccess(permission=PERMISSIONS[p]) for ns, p in (namespaces or {}).items()})


async def operation_done(door: Door, token: str, operation_id: str, within: float = 120) -> AsyncOperation:
    """Poll GetAsyncOperation until the operation is neither pending nor in progress."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        answer = await door.ok("GetAsyncOperation", GetAsyncOperationRequest(async_operation_id=operation_id), token)
        assert isinstance(answer, GetAsyncOperationResponse)
        op = answer.async_operation
        if op.state not in (AsyncOperation.STATE_PENDING, AsyncOperation.STATE_IN_PROGRESS):
            return op
        assert asyncio.get_running_loop().time() < deadline, f"operation {operation_id} still {op.state}"
        await asyncio.sleep(0.2)


async def new_namespace(door: Door, token: str, prefix: str, *, wait: bool = True) -> tuple[str, str]:
    """A namespace made over gRPC (active when ``wait``): (its id, its operation's id)."""
    made = await door.ok("CreateNamespace", CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique(prefix), retention_days=1)), token)
    assert isinstance(made, CreateNamespaceResponse)
    if wait:
        op = await operation_done(door, token, made.async_operation.id)
        assert op.state == AsyncOperation.STATE_FULFILLED, op
    return made.namespace, made.async_operation.id


async def new_user(door: Door, token: str, role: str = "read",
                   namespaces: dict[str, str] | None = None) -> tuple[str, str]:
    """A user with ``role`` (and permissions on ``namespaces``): (its id, its email)."""
    email = f"{unique('mx')}@example.com"
    made = await door.ok("CreateUser", CreateUserRequest(spec=UserSpec(
        email=email, access=role_access(role, namespaces))), token)
    assert isinstance(made, CreateUserResponse)
    return made.user_id, email


async def new_service_account(door: Door, token: str, role: str = "read",
                              namespaces: dict[str, str] | None = None) -> str:
    made = await door.ok("CreateServiceAccount", CreateServiceAccountRequest(
        spec=ServiceAccountSpec(name=unique("mx-"), access=role_access(role, namespaces))), token)
    assert isinstance(made, CreateServiceAccountResponse)
    return made.service_account_id


async def new_key(door: Door, token: str, owner_id: str = "", owner_kind: str = "service_account",
                  expires: datetime | None = None) -> tuple[str, str]:
    """An API key (owned by ``owner_id``, the caller's own owner if empty): (its id, its token)."""
    spec = ApiKeySpec(owner_id=owner_id, display_name=unique("k-"))
    if owner_id:
        spec.owner_type = OwnerType.OWNER_TYPE_USER if owner_kind == "user" else OwnerType.OWNER_TYPE_SERVICE_ACCOUNT
    if expires is not None:
        spec.expiry_time.FromDatetime(expires)
    made = await door.ok("CreateApiKey", CreateApiKeyRequest(spec=spec), token)
    assert isinstance(made, CreateApiKeyResponse)
    return made.key_id, made.token


def report_spec() -> BillingReportSpec:
    """A daily billing report of last month's first day."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    spec = BillingReportSpec(granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY)
    spec.start_time_inclusive.FromDatetime(start)
    spec.end_time_exclusive.FromDatetime(start + timedelta(days=1))
    return spec


async def new_billing_report(door: Door, token: str) -> str:
    made = await door.ok("CreateBillingReport", CreateBillingReportRequest(spec=report_spec()), token)
    assert isinstance(made, CreateBillingReportResponse)
    return made.billing_report_id


@dataclass
class Tenant:
    """An account with one of each resource CloudService names, and API keys of callers in every role."""

    account: TestAccount
    namespace: str
    operation_id: str
    key_id: str  # a spare key owned by the account's admin service account
    user_id: str  # a user without keys, read role
    user_email: str
    service_account_id: str  # a service account without keys, read role
    billing_report_id: str  # empty while the platform has no billing reports
    callers: dict[str, str] = field(default_factory=dict)  # caller name -> API key token
    roles: dict[str, str] = field(default_factory=dict)  # caller name -> account role
    refused: dict[str, str] = field(default_factory=dict)  # keys that must authenticate nothing: name -> token

    @property
    def token(self) -> str:
        """The account's first key (owned by its admin service account ``sa-<account>``)."""
        return self.account.token

    def ids(self) -> list[str]:
        """Every id of the tenant an answer to another account must never show."""
        return [i for i in (self.account.id, self.namespace, self.operation_id, self.key_id, self.user_id,
                            self.user_email, self.service_account_id, self.billing_report_id, self.account.key_id,
                            f"sa-{self.account.id}") if i]


async def make_tenant(app: TestClient, door: Door, operator_headers: dict[str, str], pool: asyncpg.Pool,
                      prefix: str, *, callers: bool) -> Tenant:
    """An account (business plan) with a namespace, an operation, a spare key, a user and a service account.

    With ``callers``: a user and a service account of every role, each with a key of its own, and keys that must
    authenticate nothing (revoked, disabled, expired, whose owner was deleted).
    """
    account = await create_account(app, operator_headers, prefix=prefix, plan="business")
    token = account.token
    namespace, operation_id = await new_namespace(door, token, "mx-")
    key_id, _ = await new_key(door, token)
    user_id, email = await new_user(door, token)
    service_account_id = await new_service_account(door, token)
    report_id = await new_billing_report(door, token) if "CreateBillingReport" in cloud_grpc.METHODS else ""
    tenant = Tenant(account, namespace, operation_id, key_id, user_id, email, service_account_id, report_id)
    tenant.callers["account key"] = token
    tenant.roles["account key"] = "admin"
    if not callers:
        return tenant
    for role in ROLES:
        owner, _ = await new_user(door, token, role)
        tenant.callers[f"user {role}"] = (await new_key(door, token, owner, "user"))[1]
        tenant.roles[f"user {role}"] = role
        owner = await new_service_account(door, token, role)
        tenant.callers[f"service account {role}"] = (await new_key(door, token, owner))[1]
        tenant.roles[f"service account {role}"] = role
    revoked_id, tenant.refused["revoked key"] = await new_key(door, token)
    await door.ok("DeleteApiKey", DeleteApiKeyRequest(key_id=revoked_id), token)
    disabled_id, tenant.refused["disabled key"] = await new_key(door, token)
    await door.ok("UpdateApiKey", UpdateApiKeyRequest(key_id=disabled_id, spec=ApiKeySpec(disabled=True)), token)
    expired_id, tenant.refused["expired key"] = await new_key(door, token,
                                                             expires=datetime.now(UTC) + timedelta(hours=1))
    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", expired_id)
    gone, _ = await new_user(door, token, "admin")
    _, tenant.refused["deleted owner's key"] = await new_key(door, token, gone, "user")
    await door.ok("DeleteUser", DeleteUserRequest(user_id=gone), token)
    return tenant
