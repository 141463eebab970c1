"""The Cloud Ops API's methods, one implementation behind both doors.

The JSON routes (``api/routes/namespaces.py``, ``apikeys.py``, ``regions.py``, ``accounts.py``) and the gRPC
server (``api/cloud_grpc.py``) authenticate the caller, build the method's request message
(``temporalio.api.cloud.cloudservice.v1``) and call the function of the same name here, which answers with the
response message or raises :class:`api.errors.ApiError` (HTTP status; the gRPC door maps it to a status code).
Validation, errors and the workflows started are therefore the same whichever door a client uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.account.v1 import Account
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    CreateNamespaceRequest,
    CreateNamespaceResponse,
    DeleteApiKeyRequest,
    DeleteApiKeyResponse,
    DeleteNamespaceRequest,
    DeleteNamespaceResponse,
    GetAccountRequest,
    GetAccountResponse,
    GetApiKeyRequest,
    GetApiKeyResponse,
    GetApiKeysRequest,
    GetApiKeysResponse,
    GetAsyncOperationRequest,
    GetAsyncOperationResponse,
    GetCurrentIdentityRequest,
    GetCurrentIdentityResponse,
    GetNamespaceRequest,
    GetNamespaceResponse,
    GetNamespacesRequest,
    GetNamespacesResponse,
    GetRegionsRequest,
    GetRegionsResponse,
    UpdateNamespaceRequest,
    UpdateNamespaceResponse,
)
from temporalio.api.cloud.identity.v1 import ApiKey, ApiKeySpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.region.v1 import Region
from temporalio.api.cloud.resource.v1 import ResourceState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import operations
from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import Customer
from api.errors import ApiError
from api.namespace_json import checked_spec, namespace_message
from tcloud.domain.namespace_names import namespace_id
from tcloud.settings import Settings
from tcloud.store import accounts as account_store
from tcloud.store import namespaces as store
from tcloud.store.accounts import ExpiryNotInFuture, KeyLimitReached, KeyNotFound, LastActiveKey
from tcloud.store.namespaces import AccountNotWritable, NamespaceExists, NamespaceQuotaReached
from tcloud.store.operations import OperationIdTaken, find_account_operation, set_operation_run_id
from workflows.namespaces import (
    CreateNamespaceInput,
    CreateNamespaceWorkflow,
    DeleteNamespaceInput,
    DeleteNamespaceWorkflow,
    UpdateNamespaceInput,
    UpdateNamespaceWorkflow,
    create_workflow_id,
    delete_workflow_id,
    update_workflow_id,
)

PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 100, 1000
MAX_ACTIVE_KEYS = 50


@dataclass(frozen=True)
class Call:
    """What one Cloud Ops call runs with: the API's clients and the authenticated caller."""

    pool: asyncpg.Pool
    temporal: Client
    settings: Settings
    customer: Customer

    @classmethod
    def of(cls, app: web.Application, customer: Customer) -> Call:
        return cls(pool=app[POOL], temporal=app[TEMPORAL], settings=app[SETTINGS], customer=customer)


def _ts(value: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


# --- Namespaces -------------------------------------------------------------------------------------------------


def not_found(namespace: str) -> ApiError:
    """Any other account's namespace (or a deleted one) answers 404, as if absent."""
    return ApiError(404, f"namespace {namespace} not found")


async def owned_namespace(call: Call, namespace: str) -> asyncpg.Record:
    """The caller's namespace row, or 404."""
    row = await store.find_owned_namespace(call.pool, namespace, call.customer.account_id)
    if row is None:
        raise not_found(namespace)
    return row


async def _start(call: Call, operation_id: str, start: Callable[[Client], Awaitable[Any]],
                 undo: Callable[[asyncpg.Pool], Awaitable[None]]) -> None:
    """Start the operation's workflow; if it cannot start, ``undo`` the row's change so nothing stays half-done."""
    try:
        handle = await start(call.temporal)
    except Exception:
        await undo(call.pool)
        raise
    await set_operation_run_id(call.pool, operation_id, handle.first_execution_run_id or handle.result_run_id)


def _accepted(operation_id: str, operation_type: str) -> AsyncOperation:
    return AsyncOperation(id=operation_id, operation_type=operation_type, state=AsyncOperation.STATE_PENDING,
                          state_deprecated="pending")


async def _earlier(call: Call, requested_id: str, operation_type: str, resource: str) -> AsyncOperation | None:
    """The operation an earlier request with this client-chosen ``async_operation_id`` started, or None.

    The id is the client's idempotency key: the same request sent again (the caller's operation of the same type
    on the same resource) answers with the operation the first one started, as it stands now, and changes nothing;
    any other use of a taken id is refused with 409 (ALREADY_EXISTS).
    """
    if not requested_id:
        return None
    row = await find_account_operation(call.pool, requested_id, call.customer.account_id)
    if row is None:
        return None
    if row["operation_type"] != operation_type or row["resource"] != resource:
        raise operations.id_taken(OperationIdTaken(requested_id))
    return await _described(call, row)


async def _repeated(call: Call, taken: OperationIdTaken, operation_type: str, resource: str) -> AsyncOperation:
    """The answer to a request whose id was taken between :func:`_earlier` and its transaction (which recorded
    nothing): the same as if it had come after."""
    earlier = await _earlier(call, taken.operation_id, operation_type, resource)
    if earlier is None:  # taken by another account's operation
        raise operations.id_taken(taken)
    return earlier


async def create_namespace(call: Call, request: CreateNamespaceRequest) -> CreateNamespaceResponse:
    """Reserve the namespace and start its CreateNamespace workflow (the answer's operation tracks it)."""
    customer = call.customer
    customer.require_writable()
    if request.tags:
        raise ApiError(400, "tags are not supported on this platform")
    name, retention = checked_spec(request.spec, region=call.settings.cloud_region)
    ns = namespace_id(name, customer.account_id)
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "CreateNamespace", ns)
    if earlier is not None:
        return CreateNamespaceResponse(namespace=ns, async_operation=earlier)
    try:
        email = await store.reserve_namespace(call.pool, namespace=ns, name=name, account_id=customer.account_id,
                                              retention_days=retention, operation_id=op_id,
                                              workflow_id=create_workflow_id(ns))
    except OperationIdTaken as err:
        return CreateNamespaceResponse(namespace=ns, async_operation=await _repeated(call, err, "CreateNamespace", ns))
    except AccountNotWritable as err:
        raise ApiError(403, f"account is {err.status}: resources cannot be created or changed") from err
    except NamespaceExists as err:
        raise ApiError(409, f"namespace {ns} already exists", exists=True) from err
    except NamespaceQuotaReached as err:
        raise ApiError(422, f"namespace quota reached: plan {err.plan} allows {err.quota} namespaces") from err
    params = CreateNamespaceInput(ns, customer.account_id, retention, email)
    await _start(call, op_id, lambda c: c.start_workflow(
        CreateNamespaceWorkflow.run, params, id=create_workflow_id(ns), task_queue=call.settings.task_queue),
        lambda pool: store.fail_unstarted_namespace_creation(pool, ns))
    return CreateNamespaceResponse(namespace=ns, async_operation=_accepted(op_id, "CreateNamespace"))


async def get_namespaces(call: Call, request: GetNamespacesRequest) -> GetNamespacesResponse:
    """A page of the caller's namespaces, in name order; ``next_page_token`` is empty on the last page."""
    size = request.page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    rows = await store.list_account_namespaces(call.pool, call.customer.account_id, after=request.page_token,
                                               name=request.name, limit=size + 1)
    answer = GetNamespacesResponse(namespaces=[namespace_message(r, call.settings) for r in rows[:size]])
    if len(rows) > size:
        answer.next_page_token = rows[size - 1]["namespace"]
    return answer


async def get_namespace(call: Call, request: GetNamespaceRequest) -> GetNamespaceResponse:
    row = await owned_namespace(call, request.namespace)
    return GetNamespaceResponse(namespace=namespace_message(row, call.settings))


def _check_version(row: asyncpg.Record, requested: str) -> None:
    if requested and requested != str(row["resource_version"]):
        raise ApiError(409, f"resourceVersion {requested} is stale: the namespace is at {row['resource_version']}")


async def update_namespace(call: Call, request: UpdateNamespaceRequest) -> UpdateNamespaceResponse:
    """Move the namespace to its new spec (retention) through an UpdateNamespace workflow.

    A ``resource_version`` other than the namespace's current one is refused with 409 (FAILED_PRECONDITION).
    """
    customer = call.customer
    ns = request.namespace
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "UpdateNamespace", ns)
    if earlier is not None:
        return UpdateNamespaceResponse(async_operation=earlier)

    def admit(row: asyncpg.Record) -> int:
        """The new retention, or the error that refuses the update (checked on the locked row)."""
        customer.require_writable()
        _, retention = checked_spec(request.spec, region=call.settings.cloud_region, name=row["name"],
                                    retention_default=row["retention_days"])
        _check_version(row, request.resource_version)
        if row["state"] != "active":
            raise ApiError(409, f"namespace {ns} is {row['state']}: only an active namespace can be updated")
        return retention

    try:
        change = await store.begin_namespace_update(
            call.pool, namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=lambda version: update_workflow_id(ns, version), check=admit)
    except OperationIdTaken as err:
        return UpdateNamespaceResponse(async_operation=await _repeated(call, err, "UpdateNamespace", ns))
    if change is None:
        raise not_found(ns)
    params = UpdateNamespaceInput(ns, change.checked, change.resource_version)
    await _start(call, op_id, lambda c: c.start_workflow(
        UpdateNamespaceWorkflow.run, params, id=update_workflow_id(ns, change.resource_version),
        task_queue=call.settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_update(pool, ns))
    return UpdateNamespaceResponse(async_operation=_accepted(op_id, "UpdateNamespace"))


async def delete_namespace(call: Call, request: DeleteNamespaceRequest) -> DeleteNamespaceResponse:
    """Delete the namespace through a DeleteNamespace workflow; its usage history is kept."""
    customer = call.customer
    ns = request.namespace
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "DeleteNamespace", ns)
    if earlier is not None:
        return DeleteNamespaceResponse(async_operation=earlier)

    def admit(row: asyncpg.Record) -> None:
        """Refuse the deletion by raising (checked on the locked row)."""
        customer.require_writable()
        _check_version(row, request.resource_version)
        if row["state"] not in ("active", "failed"):
            raise ApiError(409, f"namespace {ns} is {row['state']}: wait until its operation finishes")

    try:
        change = await store.begin_namespace_deletion(
            call.pool, namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=delete_workflow_id(ns), check=admit)
    except OperationIdTaken as err:
        return DeleteNamespaceResponse(async_operation=await _repeated(call, err, "DeleteNamespace", ns))
    if change is None:
        raise not_found(ns)
    previous_state = change.previous["state"]
    await _start(call, op_id, lambda c: c.start_workflow(
        DeleteNamespaceWorkflow.run, DeleteNamespaceInput(ns), id=delete_workflow_id(ns),
        task_queue=call.settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_deletion(pool, ns, previous_state))
    return DeleteNamespaceResponse(async_operation=_accepted(op_id, "DeleteNamespace"))


# --- Async operations -------------------------------------------------------------------------------------------


async def _described(call: Call, row: asyncpg.Record) -> AsyncOperation:
    try:
        return await operations.describe(call.temporal, row)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return AsyncOperation(id=row["id"], operation_type=row["operation_type"], state=AsyncOperation.STATE_FAILED,
                              state_deprecated="failed", failure_reason="the operation's workflow never started")


async def get_async_operation(call: Call, request: GetAsyncOperationRequest) -> GetAsyncOperationResponse:
    """The state of one of the caller's operations, read from its workflow."""
    op_id = request.async_operation_id
    row = await find_account_operation(call.pool, op_id, call.customer.account_id) if op_id else None
    if row is None:
        raise ApiError(404, f"operation {op_id} not found")
    return GetAsyncOperationResponse(async_operation=await _described(call, row))


# --- The account, its region and its identity -------------------------------------------------------------------

_ACCOUNT_STATE = {"active": ResourceState.RESOURCE_STATE_ACTIVE, "suspended": ResourceState.RESOURCE_STATE_SUSPENDED,
                  "closing": ResourceState.RESOURCE_STATE_DELETING, "closed": ResourceState.RESOURCE_STATE_DELETED}


async def get_account(call: Call, request: GetAccountRequest) -> GetAccountResponse:
    account_id = call.customer.account_id
    row = await account_store.find_account(call.pool, account_id)
    if row is None:  # its key was checked a moment ago: only an account deleted since lands here
        raise ApiError(404, f"account {account_id} not found")
    account = Account(id=row["id"], state=_ACCOUNT_STATE.get(row["status"], ResourceState.RESOURCE_STATE_UNSPECIFIED),
                      resource_version=str(int(row["updated_at"].timestamp() * 1_000_000)))
    return GetAccountResponse(account=account)


def region_message(settings: Settings) -> Region:
    """This platform's one region: its Temporal cluster (no cloud provider of Temporal Cloud's)."""
    return Region(id=settings.cloud_region, cloud_provider=Region.CLOUD_PROVIDER_UNSPECIFIED,
                  cloud_provider_region=settings.cloud_region,
                  location=f"this platform's Temporal cluster ({settings.temporal_public_address})")


async def get_regions(call: Call, request: GetRegionsRequest) -> GetRegionsResponse:
    return GetRegionsResponse(regions=[region_message(call.settings)])


async def get_current_identity(call: Call, request: GetCurrentIdentityRequest) -> GetCurrentIdentityResponse:
    """The API key the call was made with (keys belong to the account here: no users or service accounts yet)."""
    return GetCurrentIdentityResponse(principal_api_key=await _key(call, call.customer.key_id))


# --- API keys ---------------------------------------------------------------------------------------------------


def key_message(row: asyncpg.Record) -> ApiKey:
    """The Cloud Ops view of an ``api_keys`` row (owned by the account; never its token)."""
    spec = ApiKeySpec(owner_id=row["account_id"], display_name=row["display_name"], description=row["description"])
    if row["expires_at"]:
        spec.expiry_time.CopyFrom(_ts(row["expires_at"]))
    key = ApiKey(id=row["id"], spec=spec, state=ResourceState.RESOURCE_STATE_ACTIVE, state_deprecated="active")
    key.created_time.CopyFrom(_ts(row["created_at"]))
    return key


async def _key(call: Call, key_id: str) -> ApiKey:
    rows = await account_store.list_active_keys(call.pool, call.customer.account_id)
    found = next((r for r in rows if r["id"] == key_id), None)
    if found is None:
        raise ApiError(404, f"API key {key_id} not found")
    return key_message(found)


async def create_api_key(call: Call, request: CreateApiKeyRequest) -> CreateApiKeyResponse:
    """A new key of the caller's account; its token is in this answer only.

    The key exists when this answers (no async operation): ``async_operation_id`` is not used.
    """
    customer = call.customer
    customer.require_writable()
    spec = request.spec
    if spec.owner_id and spec.owner_id != customer.account_id:
        raise ApiError(400, "spec.ownerId must be your account id (or empty)")
    if spec.disabled:
        raise ApiError(400, "spec.disabled is not supported: delete a key to revoke it")
    if len(spec.display_name) > 200 or len(spec.description) > 1000:
        raise ApiError(400, "spec.displayName is limited to 200 characters, spec.description to 1000")
    expires = spec.expiry_time.ToDatetime(tzinfo=UTC) if spec.HasField("expiry_time") else None
    try:
        key = await account_store.issue_key_within_limit(
            call.pool, customer.account_id, limit=MAX_ACTIVE_KEYS, display_name=spec.display_name,
            description=spec.description, expires_at=expires)
    except ExpiryNotInFuture as err:
        raise ApiError(400, "spec.expiryTime must be in the future") from err
    except KeyLimitReached as err:
        raise ApiError(422, f"an account holds at most {MAX_ACTIVE_KEYS} active API keys") from err
    return CreateApiKeyResponse(key_id=key.key_id, token=key.token)


async def get_api_keys(call: Call, request: GetApiKeysRequest) -> GetApiKeysResponse:
    """A page of the account's active keys, oldest first (``page_token``: the last key id of the previous page)."""
    size = request.page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    if request.owner_id and request.owner_id != call.customer.account_id:
        return GetApiKeysResponse()  # keys are owned by the account: no user or service account owns one
    rows = await account_store.list_active_keys(call.pool, call.customer.account_id)
    if request.page_token:
        ids = [r["id"] for r in rows]
        if request.page_token not in ids:
            raise ApiError(400, "pageToken is not a token this listing gave (or its key was revoked since)")
        rows = rows[ids.index(request.page_token) + 1:]
    answer = GetApiKeysResponse(api_keys=[key_message(r) for r in rows[:size]])
    if len(rows) > size:
        answer.next_page_token = rows[size - 1]["id"]
    return answer


async def get_api_key(call: Call, request: GetApiKeyRequest) -> GetApiKeyResponse:
    return GetApiKeyResponse(api_key=await _key(call, request.key_id))


async def delete_api_key(call: Call, request: DeleteApiKeyRequest) -> DeleteApiKeyResponse:
    """Revoke one of the account's keys at once (the last active key cannot be revoked).

    Keys have no versions here (they never change), so ``resource_version`` is not checked; no async operation.
    """
    try:
        await account_store.revoke_key(call.pool, call.customer.account_id, request.key_id)
    except KeyNotFound as err:
        raise ApiError(404, f"API key {request.key_id} not found") from err
    except LastActiveKey as err:
        raise ApiError(409, "this is the account's last active API key: create another before revoking it") from err
    return DeleteApiKeyResponse()
