"""The Cloud Ops API's methods, one implementation behind both doors.

The JSON routes (``api/routes/namespaces.py``, ``apikeys.py``, ``regions.py``, ``accounts.py``) and the gRPC
server (``api/cloud_grpc.py``) authenticate the caller, build the method's request message
(``temporalio.api.cloud.cloudservice.v1``) and call the function of the same name here, which answers with the
response message or raises :class:`api.errors.ApiError` (HTTP status; the gRPC door maps it to a status code).
Validation, errors and the workflows started are therefore the same whichever door a client uses.
"""

from __future__ import annotations

import re
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
    CreateServiceAccountRequest,
    CreateServiceAccountResponse,
    CreateUserRequest,
    CreateUserResponse,
    DeleteApiKeyRequest,
    DeleteApiKeyResponse,
    DeleteNamespaceRequest,
    DeleteNamespaceResponse,
    DeleteServiceAccountRequest,
    DeleteServiceAccountResponse,
    DeleteUserRequest,
    DeleteUserResponse,
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
    GetRegionRequest,
    GetRegionResponse,
    GetRegionsRequest,
    GetRegionsResponse,
    GetServiceAccountRequest,
    GetServiceAccountResponse,
    GetServiceAccountsRequest,
    GetServiceAccountsResponse,
    GetUserRequest,
    GetUserResponse,
    GetUsersRequest,
    GetUsersResponse,
    RenameCustomSearchAttributeRequest,
    RenameCustomSearchAttributeResponse,
    SetServiceAccountNamespaceAccessRequest,
    SetServiceAccountNamespaceAccessResponse,
    SetUserNamespaceAccessRequest,
    SetUserNamespaceAccessResponse,
    UpdateApiKeyRequest,
    UpdateApiKeyResponse,
    UpdateNamespaceRequest,
    UpdateNamespaceResponse,
    UpdateNamespaceTagsRequest,
    UpdateNamespaceTagsResponse,
    UpdateServiceAccountRequest,
    UpdateServiceAccountResponse,
    UpdateUserRequest,
    UpdateUserResponse,
)
from temporalio.api.cloud.identity.v1 import Access as AccessMessage
from temporalio.api.cloud.identity.v1 import (
    AccountAccess,
    ApiKey,
    ApiKeySpec,
    NamespaceAccess,
    OwnerType,
    ServiceAccount,
    ServiceAccountSpec,
    User,
    UserSpec,
)
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.region.v1 import Region
from temporalio.api.cloud.resource.v1 import ResourceState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import namespace_attributes, operations
from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import Customer
from api.errors import ApiError
from api.namespace_json import checked_spec, namespace_message
from tcloud.domain import access
from tcloud.domain.namespace_names import namespace_id
from tcloud.settings import Settings
from tcloud.store import accounts as account_store
from tcloud.store import identities as identity_store
from tcloud.store import namespaces as store
from tcloud.store.accounts import ExpiryNotInFuture, KeyLimitReached, KeyNotFound, LastActiveKey
from tcloud.store.identities import IdentityExists, LastAdmin, UnknownNamespaces
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
    rename_workflow_id,
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


def _require_namespace_read(customer: Customer, namespace: str | None = None) -> None:
    """Reading namespaces: roles that read the account's namespaces, or any permission on this one."""
    if namespace is not None and namespace in customer.namespace_access:
        return
    customer.require("namespace.read")


def _require_namespace_change(customer: Customer, namespace: str) -> None:
    if not access.may_change_namespace(customer.role, customer.namespace_access, namespace):
        raise ApiError(403, f"the account role {customer.role} without admin permission on {namespace} "
                            "does not allow changing it")


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
    customer.require("namespace.create")
    customer.require_writable()
    if request.tags:
        customer.require("namespace.tag")
    tags = namespace_attributes.checked_tags(request.tags)
    name, retention = checked_spec(request.spec, region=call.settings.cloud_region)
    attributes = namespace_attributes.requested_search_attributes(request.spec) or {}
    ns = namespace_id(name, customer.account_id)
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "CreateNamespace", ns)
    if earlier is not None:
        return CreateNamespaceResponse(namespace=ns, async_operation=earlier)
    try:
        email = await store.reserve_namespace(call.pool, namespace=ns, name=name, account_id=customer.account_id,
                                              retention_days=retention, operation_id=op_id,
                                              workflow_id=create_workflow_id(ns), tags=tags,
                                              search_attributes=attributes)
    except OperationIdTaken as err:
        return CreateNamespaceResponse(namespace=ns, async_operation=await _repeated(call, err, "CreateNamespace", ns))
    except AccountNotWritable as err:
        raise ApiError(403, f"account is {err.status}: resources cannot be created or changed") from err
    except NamespaceExists as err:
        raise ApiError(409, f"namespace {ns} already exists", exists=True) from err
    except NamespaceQuotaReached as err:
        raise ApiError(422, f"namespace quota reached: plan {err.plan} allows {err.quota} namespaces") from err
    params = CreateNamespaceInput(ns, customer.account_id, retention, email, attributes)
    await _start(call, op_id, lambda c: c.start_workflow(
        CreateNamespaceWorkflow.run, params, id=create_workflow_id(ns), task_queue=call.settings.task_queue),
        lambda pool: store.fail_unstarted_namespace_creation(pool, ns))
    if customer.role != "admin" and customer.owner_id:  # a developer administers the namespaces it creates
        await identity_store.grant_namespace_admin(call.pool, customer.owner_id, ns)
    return CreateNamespaceResponse(namespace=ns, async_operation=_accepted(op_id, "CreateNamespace"))


async def get_namespaces(call: Call, request: GetNamespacesRequest) -> GetNamespacesResponse:
    """A page of the caller's namespaces (:func:`namespace_page`) as messages."""
    rows, next_page_token = await namespace_page(call, request)
    return GetNamespacesResponse(namespaces=[namespace_message(r, call.settings) for r in rows],
                                 next_page_token=next_page_token)


async def namespace_page(call: Call, request: GetNamespacesRequest) -> tuple[list[asyncpg.Record], str]:
    """The rows of a page of the caller's namespaces, in name order, and the next page's token (empty on the last
    page): the rules of ``GetNamespaces`` for both doors (the JSON route writes its answer from these rows).

    An identity whose role does not read namespaces sees those it has a permission on.
    """
    size = request.page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    rows = await store.list_account_namespaces(call.pool, call.customer.account_id, after=request.page_token,
                                               name=request.name, limit=size + 1)
    if not access.may(call.customer.role, "namespace.read"):
        if not call.customer.namespace_access:
            call.customer.require("namespace.read")
        rows = [r for r in rows if r["namespace"] in call.customer.namespace_access]
    return rows[:size], rows[size - 1]["namespace"] if len(rows) > size else ""


async def get_namespace(call: Call, request: GetNamespaceRequest) -> GetNamespaceResponse:
    _require_namespace_read(call.customer, request.namespace)
    row = await owned_namespace(call, request.namespace)
    return GetNamespaceResponse(namespace=namespace_message(row, call.settings))


def _check_version(row: asyncpg.Record, requested: str) -> None:
    if requested and requested != str(row["resource_version"]):
        raise ApiError(409, f"resourceVersion {requested} is stale: the namespace is at {row['resource_version']}")


async def update_namespace(call: Call, request: UpdateNamespaceRequest) -> UpdateNamespaceResponse:
    """Move the namespace to its new spec (retention, added custom search attributes) through an UpdateNamespace
    workflow, which registers the attributes on the server before recording them.

    A ``resource_version`` other than the namespace's current one is refused with 409 (FAILED_PRECONDITION).
    """
    customer = call.customer
    ns = request.namespace
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "UpdateNamespace", ns)
    if earlier is not None:
        return UpdateNamespaceResponse(async_operation=earlier)

    def admit(row: asyncpg.Record) -> tuple[int, dict[str, str] | None]:
        """The new retention and search attributes (None: unchanged), or the error that refuses the update (checked
        on the locked row)."""
        _require_namespace_change(customer, ns)
        customer.require_writable()
        _, retention = checked_spec(request.spec, region=call.settings.cloud_region, name=row["name"],
                                    retention_default=row["retention_days"])
        attributes = namespace_attributes.search_attributes_after(
            namespace_attributes.json_map(row["search_attributes"]), request.spec)
        _check_version(row, request.resource_version)
        if row["state"] != "active":
            raise ApiError(409, f"namespace {ns} is {row['state']}: only an active namespace can be updated")
        return retention, attributes

    try:
        change = await store.begin_namespace_update(
            call.pool, namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=lambda version: update_workflow_id(ns, version), check=admit)
    except OperationIdTaken as err:
        return UpdateNamespaceResponse(async_operation=await _repeated(call, err, "UpdateNamespace", ns))
    if change is None:
        raise not_found(ns)
    retention, attributes = change.checked
    params = UpdateNamespaceInput(ns, retention, change.resource_version, attributes)
    await _start(call, op_id, lambda c: c.start_workflow(
        UpdateNamespaceWorkflow.run, params, id=update_workflow_id(ns, change.resource_version),
        task_queue=call.settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_update(pool, ns))
    return UpdateNamespaceResponse(async_operation=_accepted(op_id, "UpdateNamespace"))


async def rename_custom_search_attribute(
        call: Call, request: RenameCustomSearchAttributeRequest) -> RenameCustomSearchAttributeResponse:
    """Rename one of the namespace's custom search attributes on the server through an UpdateNamespace workflow
    (values already indexed are found by the new name); the same rights and checks as UpdateNamespace.

    The namespace keeps its resource version: Temporal's Terraform provider renames, then updates the namespace with
    the version it read before the rename (and Temporal Cloud takes that, as the provider's own tests show).
    """
    customer = call.customer
    ns = request.namespace
    old, new = request.existing_custom_search_attribute_name, request.new_custom_search_attribute_name
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "RenameCustomSearchAttribute", ns)
    if earlier is not None:
        return RenameCustomSearchAttributeResponse(async_operation=earlier)

    def admit(row: asyncpg.Record) -> dict[str, str]:
        """All the attributes after the rename, or the error that refuses it (checked on the locked row)."""
        _require_namespace_change(customer, ns)
        customer.require_writable()
        attributes = namespace_attributes.json_map(row["search_attributes"])
        renamed = namespace_attributes.renamed_search_attributes(attributes, old, new)
        _check_version(row, request.resource_version)
        if row["state"] != "active":
            raise ApiError(409, f"namespace {ns} is {row['state']}: only an active namespace can be updated")
        return renamed

    try:
        change = await store.begin_namespace_update(
            call.pool, namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=lambda version: rename_workflow_id(ns, version, new), check=admit,
            operation_type="RenameCustomSearchAttribute", bump_version=False)
    except OperationIdTaken as err:
        return RenameCustomSearchAttributeResponse(
            async_operation=await _repeated(call, err, "RenameCustomSearchAttribute", ns))
    if change is None:
        raise not_found(ns)
    params = UpdateNamespaceInput(ns, change.previous["retention_days"], change.resource_version, change.checked,
                                  renamed=[old, new])
    await _start(call, op_id, lambda c: c.start_workflow(
        UpdateNamespaceWorkflow.run, params, id=rename_workflow_id(ns, change.resource_version, new),
        task_queue=call.settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_update(pool, ns))
    return RenameCustomSearchAttributeResponse(async_operation=_accepted(op_id, "RenameCustomSearchAttribute"))


async def update_namespace_tags(call: Call, request: UpdateNamespaceTagsRequest) -> UpdateNamespaceTagsResponse:
    """Set and remove tags of a namespace (account admins only, as Temporal Cloud); done in the transaction that
    records the operation, fulfilled in the answer. Tags are the platform's own: the Temporal server never sees
    them."""
    customer = call.customer
    ns = request.namespace
    customer.require("namespace.tag")
    customer.require_writable()
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "UpdateNamespaceTags", ns)
    if earlier is not None:
        return UpdateNamespaceTagsResponse(async_operation=earlier)

    def change(row: asyncpg.Record, current: dict[str, str]) -> dict[str, str]:
        if row["state"] == "deleting":
            raise ApiError(409, f"namespace {ns} is being deleted")
        return namespace_attributes.changed_tags(current, request.tags_to_upsert, request.tags_to_remove)

    try:
        row = await store.change_namespace_tags(call.pool, namespace=ns, account_id=customer.account_id,
                                                operation_id=op_id, change=change)
    except OperationIdTaken as err:
        return UpdateNamespaceTagsResponse(async_operation=await _repeated(call, err, "UpdateNamespaceTags", ns))
    if row is None:
        raise not_found(ns)
    return UpdateNamespaceTagsResponse(async_operation=_fulfilled(op_id, "UpdateNamespaceTags"))


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
        _require_namespace_change(customer, ns)
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
    if row["fulfilled_at"] is not None:  # done in the transaction that recorded it (identities, API keys)
        done = AsyncOperation(id=row["id"], operation_type=row["operation_type"],
                              state=AsyncOperation.STATE_FULFILLED, state_deprecated="fulfilled")
        done.started_time.CopyFrom(_ts(row["created_at"]))
        done.finished_time.CopyFrom(_ts(row["fulfilled_at"]))
        return done
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


async def get_region(call: Call, request: GetRegionRequest) -> GetRegionResponse:
    """This platform's one region by its id; any other id is not found."""
    if request.region != call.settings.cloud_region:
        raise ApiError(404, f"region {request.region} not found: this platform has one region, "
                            f"{call.settings.cloud_region!r}")
    return GetRegionResponse(region=region_message(call.settings))


async def get_current_identity(call: Call, request: GetCurrentIdentityRequest) -> GetCurrentIdentityResponse:
    """The API key the call was made with, and the user or service account that owns it."""
    customer = call.customer
    answer = GetCurrentIdentityResponse(principal_api_key=await _key(call, customer.key_id, check_owner=False))
    owner = await identity_store.find_identity(call.pool, customer.account_id, customer.owner_id,
                                               customer.owner_kind)
    if owner is not None and owner["kind"] == "user":
        answer.user.CopyFrom(user_message(owner))
    elif owner is not None:
        answer.service_account.CopyFrom(service_account_message(owner))
    return answer


# --- Users and service accounts ---------------------------------------------------------------------------------

_ROLE_OF = {AccountAccess.ROLE_ADMIN: "admin", AccountAccess.ROLE_DEVELOPER: "developer",
            AccountAccess.ROLE_FINANCE_ADMIN: "finance_admin", AccountAccess.ROLE_READ: "read"}
_ROLE_ENUM = {name: value for value, name in _ROLE_OF.items()}
_ROLE_WORDS = {"admin": "admin", "developer": "developer", "financeadmin": "finance_admin",
               "finance_admin": "finance_admin", "read": "read"}
_PERMISSION_OF = {NamespaceAccess.PERMISSION_ADMIN: "admin", NamespaceAccess.PERMISSION_WRITE: "write",
                  NamespaceAccess.PERMISSION_READ: "read"}
_PERMISSION_ENUM = {name: value for value, name in _PERMISSION_OF.items()}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _role(message: AccountAccess) -> str:
    """The account role of an ``AccountAccess`` (the enum, or the deprecated string)."""
    if message.role in _ROLE_OF:
        return _ROLE_OF[message.role]
    if message.role == AccountAccess.ROLE_UNSPECIFIED and message.role_deprecated.lower() in _ROLE_WORDS:
        return _ROLE_WORDS[message.role_deprecated.lower()]
    raise ApiError(400, "spec.access.accountAccess.role must be one of ROLE_ADMIN, ROLE_DEVELOPER, "
                        "ROLE_FINANCE_ADMIN, ROLE_READ (owner, metrics-read and custom roles are not supported)")


def _permission(message: NamespaceAccess, namespace: str) -> str:
    if message.permission in _PERMISSION_OF:
        return _PERMISSION_OF[message.permission]
    if message.permission == NamespaceAccess.PERMISSION_UNSPECIFIED and \
            message.permission_deprecated.lower() in _PERMISSION_ENUM:
        return message.permission_deprecated.lower()
    raise ApiError(400, f"the permission on {namespace} must be PERMISSION_ADMIN, PERMISSION_WRITE or "
                        "PERMISSION_READ")


def _checked_access(message: AccessMessage) -> tuple[str, dict[str, str]]:
    """The account role and namespace access of an ``Access`` message, validated."""
    if message.account_access.custom_roles or message.custom_roles_deprecated:
        raise ApiError(400, "custom roles are not supported by this platform")
    return _role(message.account_access), {ns: _permission(a, ns) for ns, a in message.namespace_accesses.items()}


def _access_message(row: dict[str, Any]) -> AccessMessage:
    answer = AccessMessage(account_access=AccountAccess(role=_ROLE_ENUM[row["account_role"]],
                                                        role_deprecated=row["account_role"].replace("_", "")))
    for ns, permission in sorted(row["namespace_access"].items()):
        answer.namespace_accesses[ns].CopyFrom(NamespaceAccess(permission=_PERMISSION_ENUM[permission],
                                                               permission_deprecated=permission))
    return answer


def _stamps(target: User | ServiceAccount | ApiKey, row: Any) -> None:
    target.created_time.CopyFrom(_ts(row["created_at"]))
    target.last_modified_time.CopyFrom(_ts(row["updated_at"]))


def user_message(row: dict[str, Any]) -> User:
    user = User(id=row["id"], resource_version=str(row["resource_version"]),
                spec=UserSpec(email=row["name"], access=_access_message(row)),
                state=ResourceState.RESOURCE_STATE_ACTIVE, state_deprecated="active",
                async_operation_id=row["async_operation_id"] or "")
    _stamps(user, row)
    return user


def service_account_message(row: dict[str, Any]) -> ServiceAccount:
    account = ServiceAccount(id=row["id"], resource_version=str(row["resource_version"]),
                             spec=ServiceAccountSpec(name=row["name"], description=row["description"],
                                                     access=_access_message(row)),
                             state=ResourceState.RESOURCE_STATE_ACTIVE, state_deprecated="active",
                             async_operation_id=row["async_operation_id"] or "")
    _stamps(account, row)
    return account


_KINDS = {"user": "user", "service_account": "service account"}


def _user_values(spec: UserSpec) -> dict[str, Any]:
    email = spec.email.strip()
    if not _EMAIL.fullmatch(email) or len(email) > 254:
        raise ApiError(400, "spec.email must be an email address")
    role, namespaces = _checked_access(spec.access)
    return {"name": email, "description": "", "account_role": role, "namespace_access": namespaces}


def _service_account_values(spec: ServiceAccountSpec) -> dict[str, Any]:
    if spec.HasField("namespace_scoped_access"):
        raise ApiError(400, "namespace-scoped service accounts are not supported by this platform")
    name = spec.name.strip()
    if not 1 <= len(name) <= 200:
        raise ApiError(400, "spec.name must be 1 to 200 characters")
    if len(spec.description) > 1000:
        raise ApiError(400, "spec.description is limited to 1000 characters")
    role, namespaces = _checked_access(spec.access)
    return {"name": name, "description": spec.description, "account_role": role, "namespace_access": namespaces}


def _identity_errors(err: Exception, kind: str) -> ApiError:
    if isinstance(err, IdentityExists):
        return ApiError(409, f"a user with the email {err} already exists", exists=True)
    if isinstance(err, UnknownNamespaces):
        return ApiError(400, f"no such namespace in this account: {', '.join(err.names)}")
    if isinstance(err, LastAdmin):
        return ApiError(409, "the account would be left without an admin holding a usable API key")
    raise err


async def _create_identity(call: Call, kind: str, values: dict[str, Any], requested_id: str,
                           operation_type: str) -> tuple[str, AsyncOperation]:
    customer = call.customer
    customer.require("identity.write")
    customer.require_writable()
    op_id = operations.new_operation_id(requested_id)
    if requested_id:
        row = await find_account_operation(call.pool, requested_id, customer.account_id)
        if row is not None:
            if row["operation_type"] != operation_type:
                raise operations.id_taken(OperationIdTaken(requested_id))
            return row["resource"], await _described(call, row)
    try:
        made = await identity_store.create_identity(
            call.pool, account_id=customer.account_id, kind=kind, operation_id=op_id, operation_type=operation_type,
            name=values["name"], description=values["description"], role=values["account_role"],
            namespace_access=values["namespace_access"])
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    except (IdentityExists, UnknownNamespaces) as err:
        raise _identity_errors(err, kind) from err
    return made["id"], _fulfilled(op_id, operation_type)


def _fulfilled(op_id: str, operation_type: str) -> AsyncOperation:
    return AsyncOperation(id=op_id, operation_type=operation_type, state=AsyncOperation.STATE_FULFILLED,
                          state_deprecated="fulfilled")


async def _change_identity(call: Call, kind: str, identity_id: str, requested_id: str, operation_type: str,
                           resource_version: str, values: Callable[[dict[str, Any]], dict[str, Any] | None], *,
                           takes_access_away: bool = False) -> AsyncOperation:
    """Change (or delete, when ``values`` answers None) one of the account's identities, admins only.

    A suspended account may still take access away (delete an identity, remove its access to a namespace): a
    customer locked out for payment must still be able to lock out a departed colleague.
    """
    customer = call.customer
    customer.require("identity.write")
    if not takes_access_away:
        customer.require_writable()
    op_id = operations.new_operation_id(requested_id)
    earlier = await _earlier(call, requested_id, operation_type, identity_id)
    if earlier is not None:
        return earlier

    def change(row: dict[str, Any]) -> dict[str, Any] | None:
        if resource_version and resource_version != str(row["resource_version"]):
            raise ApiError(409, f"resourceVersion {resource_version} is stale: the {_KINDS[kind]} is at "
                                f"{row['resource_version']}")
        return values(row)

    try:
        row = await identity_store.change_identity(
            call.pool, account_id=customer.account_id, identity_id=identity_id, kind=kind, operation_id=op_id,
            operation_type=operation_type, change=change)
    except OperationIdTaken as err:
        return await _repeated(call, err, operation_type, identity_id)
    except (IdentityExists, UnknownNamespaces, LastAdmin) as err:
        raise _identity_errors(err, kind) from err
    if row is None:
        raise ApiError(404, f"{_KINDS[kind]} {identity_id} not found")
    return _fulfilled(op_id, operation_type)


async def _identity(call: Call, kind: str, identity_id: str) -> dict[str, Any]:
    customer = call.customer
    if identity_id != customer.owner_id:  # everyone may read itself
        customer.require("identity.read")
    row = await identity_store.find_identity(call.pool, customer.account_id, identity_id, kind)
    if row is None:
        raise ApiError(404, f"{_KINDS[kind]} {identity_id} not found")
    return row


async def _identities(call: Call, kind: str, page_size: int, page_token: str, email: str = "",
                      namespace: str = "") -> tuple[list[dict[str, Any]], str]:
    call.customer.require("identity.read")
    size = page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    rows = await identity_store.list_identities(call.pool, call.customer.account_id, kind, after=page_token,
                                                limit=size + 1, email=email, namespace=namespace)
    return rows[:size], rows[size - 1]["id"] if len(rows) > size else ""


def _removes_access(message: NamespaceAccess) -> bool:
    return message.permission == NamespaceAccess.PERMISSION_UNSPECIFIED and not message.permission_deprecated


def _with_namespace_access(namespace: str, message: NamespaceAccess) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The values of an identity after setting (or, with PERMISSION_UNSPECIFIED, removing) one namespace's access."""
    def values(row: dict[str, Any]) -> dict[str, Any]:
        namespaces = dict(row["namespace_access"])
        if _removes_access(message):
            namespaces.pop(namespace, None)
        else:
            namespaces[namespace] = _permission(message, namespace)
        return {"namespace_access": namespaces}
    return values


async def create_user(call: Call, request: CreateUserRequest) -> CreateUserResponse:
    """Add a user (no invitation is sent: a user acts through the API keys an admin makes for it)."""
    call.customer.require("identity.write")  # before validation: a refused caller learns nothing more
    user_id, op = await _create_identity(call, "user", _user_values(request.spec), request.async_operation_id,
                                         "CreateUser")
    return CreateUserResponse(user_id=user_id, async_operation=op)


async def get_user(call: Call, request: GetUserRequest) -> GetUserResponse:
    return GetUserResponse(user=user_message(await _identity(call, "user", request.user_id)))


async def get_users(call: Call, request: GetUsersRequest) -> GetUsersResponse:
    rows, token = await _identities(call, "user", request.page_size, request.page_token, email=request.email,
                                    namespace=request.namespace)
    return GetUsersResponse(users=[user_message(r) for r in rows], next_page_token=token)


async def update_user(call: Call, request: UpdateUserRequest) -> UpdateUserResponse:
    call.customer.require("identity.write")  # before validation: a refused caller learns nothing more
    values = _user_values(request.spec)
    return UpdateUserResponse(async_operation=await _change_identity(
        call, "user", request.user_id, request.async_operation_id, "UpdateUser", request.resource_version,
        lambda row: values))


async def delete_user(call: Call, request: DeleteUserRequest) -> DeleteUserResponse:
    """Remove a user; its API keys are revoked with it."""
    return DeleteUserResponse(async_operation=await _change_identity(
        call, "user", request.user_id, request.async_operation_id, "DeleteUser", request.resource_version,
        lambda row: None, takes_access_away=True))


async def set_user_namespace_access(call: Call,
                                    request: SetUserNamespaceAccessRequest) -> SetUserNamespaceAccessResponse:
    return SetUserNamespaceAccessResponse(async_operation=await _change_identity(
        call, "user", request.user_id, request.async_operation_id, "SetUserNamespaceAccess",
        request.resource_version, _with_namespace_access(request.namespace, request.access),
        takes_access_away=_removes_access(request.access)))


async def create_service_account(call: Call,
                                 request: CreateServiceAccountRequest) -> CreateServiceAccountResponse:
    call.customer.require("identity.write")  # before validation: a refused caller learns nothing more
    account_id, op = await _create_identity(call, "service_account", _service_account_values(request.spec),
                                            request.async_operation_id, "CreateServiceAccount")
    return CreateServiceAccountResponse(service_account_id=account_id, async_operation=op)


async def get_service_account(call: Call, request: GetServiceAccountRequest) -> GetServiceAccountResponse:
    return GetServiceAccountResponse(service_account=service_account_message(
        await _identity(call, "service_account", request.service_account_id)))


async def get_service_accounts(call: Call, request: GetServiceAccountsRequest) -> GetServiceAccountsResponse:
    rows, token = await _identities(call, "service_account", request.page_size, request.page_token)
    return GetServiceAccountsResponse(service_account=[service_account_message(r) for r in rows],
                                      next_page_token=token)


async def update_service_account(call: Call,
                                 request: UpdateServiceAccountRequest) -> UpdateServiceAccountResponse:
    call.customer.require("identity.write")  # before validation: a refused caller learns nothing more
    values = _service_account_values(request.spec)
    return UpdateServiceAccountResponse(async_operation=await _change_identity(
        call, "service_account", request.service_account_id, request.async_operation_id, "UpdateServiceAccount",
        request.resource_version, lambda row: values))


async def delete_service_account(call: Call,
                                 request: DeleteServiceAccountRequest) -> DeleteServiceAccountResponse:
    """Remove a service account; its API keys are revoked with it."""
    return DeleteServiceAccountResponse(async_operation=await _change_identity(
        call, "service_account", request.service_account_id, request.async_operation_id, "DeleteServiceAccount",
        request.resource_version, lambda row: None, takes_access_away=True))


async def set_service_account_namespace_access(
        call: Call, request: SetServiceAccountNamespaceAccessRequest) -> SetServiceAccountNamespaceAccessResponse:
    return SetServiceAccountNamespaceAccessResponse(async_operation=await _change_identity(
        call, "service_account", request.service_account_id, request.async_operation_id,
        "SetServiceAccountNamespaceAccess", request.resource_version,
        _with_namespace_access(request.namespace, request.access), takes_access_away=_removes_access(request.access)))


# --- API keys ---------------------------------------------------------------------------------------------------

_OWNER_TYPE = {"user": OwnerType.OWNER_TYPE_USER, "service_account": OwnerType.OWNER_TYPE_SERVICE_ACCOUNT}


def key_message(row: asyncpg.Record) -> ApiKey:
    """The Cloud Ops view of an ``api_keys`` row (never its token)."""
    spec = ApiKeySpec(owner_id=row["owner_id"], owner_type=_OWNER_TYPE[row["owner_kind"]],
                      owner_type_deprecated=row["owner_kind"].replace("_", "-"),
                      display_name=row["display_name"], description=row["description"], disabled=row["disabled"])
    if row["expires_at"]:
        spec.expiry_time.CopyFrom(_ts(row["expires_at"]))
    key = ApiKey(id=row["id"], spec=spec, state=ResourceState.RESOURCE_STATE_ACTIVE, state_deprecated="active",
                 resource_version=str(row["resource_version"]))
    _stamps(key, row)
    return key


def _may_manage_key(customer: Customer, owner_id: str) -> bool:
    """Everyone manages its own keys; admins manage every key of the account."""
    return owner_id == customer.owner_id or access.may(customer.role, "identity.write")


async def _key_row(call: Call, key_id: str, *, check_owner: bool = True) -> asyncpg.Record:
    rows = await account_store.list_active_keys(call.pool, call.customer.account_id)
    found = next((r for r in rows if r["id"] == key_id), None)
    if found is None:
        raise ApiError(404, f"API key {key_id} not found")
    if check_owner and not _may_manage_key(call.customer, found["owner_id"]):
        raise ApiError(403, f"API key {key_id} belongs to another identity: only admins manage it")
    return found


async def _key(call: Call, key_id: str, *, check_owner: bool = True) -> ApiKey:
    return key_message(await _key_row(call, key_id, check_owner=check_owner))


async def create_api_key(call: Call, request: CreateApiKeyRequest) -> CreateApiKeyResponse:
    """A new key owned by a user or service account (the caller's own owner by default); its token is in this
    answer only. Admins make keys for any identity, others for their own.

    The key exists when this answers: its operation is fulfilled at once.
    """
    customer = call.customer
    customer.require_writable()
    spec = request.spec
    owner = spec.owner_id or customer.owner_id
    if owner == customer.account_id:  # before identities, a key's owner was its account
        owner = customer.owner_id
    if not _may_manage_key(customer, owner):
        raise ApiError(403, "only admins make API keys for other users and service accounts")
    if len(spec.display_name) > 200 or len(spec.description) > 1000:
        raise ApiError(400, "spec.displayName is limited to 200 characters, spec.description to 1000")
    op_id = operations.new_operation_id(request.async_operation_id)
    if request.async_operation_id:
        earlier = await find_account_operation(call.pool, request.async_operation_id, customer.account_id)
        if earlier is not None:  # a retry: the key it made (its token was in the first answer only)
            if earlier["operation_type"] != "CreateApiKey":
                raise operations.id_taken(OperationIdTaken(request.async_operation_id))
            return CreateApiKeyResponse(key_id=earlier["resource"], async_operation=await _described(call, earlier))
    kind = await _owner_kind(call, owner)
    if spec.owner_type not in (OwnerType.OWNER_TYPE_UNSPECIFIED, _OWNER_TYPE[kind]):
        raise ApiError(400, f"spec.ownerType does not match the owner {owner}, a {_KINDS[kind]}")
    expires = spec.expiry_time.ToDatetime(tzinfo=UTC) if spec.HasField("expiry_time") else None
    try:
        key = await account_store.issue_key_within_limit(
            call.pool, customer.account_id, limit=MAX_ACTIVE_KEYS, display_name=spec.display_name,
            description=spec.description, expires_at=expires, owner_id=owner, disabled=spec.disabled)
        await identity_store.fulfilled_operation(call.pool, operation_id=op_id, account_id=customer.account_id,
                                                 operation_type="CreateApiKey", resource=key.key_id)
    except ExpiryNotInFuture as err:
        raise ApiError(400, "spec.expiryTime must be in the future") from err
    except KeyLimitReached as err:
        raise ApiError(422, f"an account holds at most {MAX_ACTIVE_KEYS} active API keys") from err
    except KeyNotFound as err:
        raise ApiError(400, f"spec.ownerId {owner} is no user or service account of this account") from err
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    return CreateApiKeyResponse(key_id=key.key_id, token=key.token, async_operation=_fulfilled(op_id, "CreateApiKey"))


async def _owner_kind(call: Call, owner_id: str) -> str:
    for kind in ("service_account", "user"):
        if await identity_store.find_identity(call.pool, call.customer.account_id, owner_id, kind) is not None:
            return kind
    raise ApiError(400, f"spec.ownerId {owner_id} is no user or service account of this account")


async def get_api_keys(call: Call, request: GetApiKeysRequest) -> GetApiKeysResponse:
    """A page of the account's active keys, oldest first (``page_token``: the last key id of the previous page).

    Admins see every key (``owner_id`` filters), others their own.
    """
    size = request.page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    customer = call.customer
    rows = await account_store.list_active_keys(call.pool, customer.account_id)
    owner = customer.owner_id if request.owner_id == customer.account_id else request.owner_id
    rows = [r for r in rows if (not owner or r["owner_id"] == owner) and _may_manage_key(customer, r["owner_id"])]
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


async def update_api_key(call: Call, request: UpdateApiKeyRequest) -> UpdateApiKeyResponse:
    """Rename, describe, enable or disable a key (a disabled key authenticates nothing until enabled again).

    Its owner and expiry cannot change; a stale ``resource_version`` is refused (409, FAILED_PRECONDITION).
    """
    customer = call.customer
    spec = request.spec
    if len(spec.display_name) > 200 or len(spec.description) > 1000:
        raise ApiError(400, "spec.displayName is limited to 200 characters, spec.description to 1000")
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "UpdateApiKey", request.key_id)
    if earlier is not None:
        return UpdateApiKeyResponse(async_operation=earlier)

    def check(row: asyncpg.Record) -> None:
        if not _may_manage_key(customer, row["owner_id"]):
            raise ApiError(403, f"API key {request.key_id} belongs to another identity: only admins manage it")
        only_disables = spec.disabled and (spec.display_name, spec.description) == (row["display_name"],
                                                                                    row["description"])
        if not only_disables:  # a suspended account may still disable a key, as it may revoke one
            customer.require_writable()
        if request.resource_version and request.resource_version != str(row["resource_version"]):
            raise ApiError(409, f"resourceVersion {request.resource_version} is stale: the API key is at "
                                f"{row['resource_version']}")
        if spec.owner_id and spec.owner_id != row["owner_id"]:
            raise ApiError(400, "spec.ownerId cannot change: make a new key for the other owner")
        stored = int(row["expires_at"].timestamp()) if row["expires_at"] else None
        wanted = spec.expiry_time.seconds if spec.HasField("expiry_time") else None
        if wanted is not None and wanted != stored:
            raise ApiError(400, "spec.expiryTime cannot change: make a new key")

    try:
        await account_store.update_key(call.pool, customer.account_id, request.key_id, check=check,
                                       display_name=spec.display_name, description=spec.description,
                                       disabled=spec.disabled)
        await identity_store.fulfilled_operation(call.pool, operation_id=op_id, account_id=customer.account_id,
                                                 operation_type="UpdateApiKey", resource=request.key_id)
    except KeyNotFound as err:
        raise ApiError(404, f"API key {request.key_id} not found") from err
    except LastActiveKey as err:
        raise ApiError(409, "no account admin would keep a usable API key: make another before disabling this "
                            "one") from err
    except OperationIdTaken as err:
        return UpdateApiKeyResponse(async_operation=await _repeated(call, err, "UpdateApiKey", request.key_id))
    return UpdateApiKeyResponse(async_operation=_fulfilled(op_id, "UpdateApiKey"))


async def delete_api_key(call: Call, request: DeleteApiKeyRequest) -> DeleteApiKeyResponse:
    """Revoke a key at once (the account's admins must keep a usable key); its operation is fulfilled at once."""
    customer = call.customer
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier(call, request.async_operation_id, "DeleteApiKey", request.key_id)
    if earlier is not None:
        return DeleteApiKeyResponse(async_operation=earlier)
    row = await _key_row(call, request.key_id)
    if request.resource_version and request.resource_version != str(row["resource_version"]):
        raise ApiError(409, f"resourceVersion {request.resource_version} is stale: the API key is at "
                            f"{row['resource_version']}")
    try:
        await account_store.revoke_key(call.pool, customer.account_id, request.key_id)
        await identity_store.fulfilled_operation(call.pool, operation_id=op_id, account_id=customer.account_id,
                                                 operation_type="DeleteApiKey", resource=request.key_id)
    except KeyNotFound as err:
        raise ApiError(404, f"API key {request.key_id} not found") from err
    except LastActiveKey as err:
        raise ApiError(409, "this is the account's last active API key: create another before revoking it") from err
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    return DeleteApiKeyResponse(async_operation=_fulfilled(op_id, "DeleteApiKey"))
