"""Routes: namespaces, their async operations and data-plane tokens (Cloud Ops API paths and JSON)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from temporalio.api.cloud.cloudservice.v1 import (
    CreateNamespaceRequest,
    CreateNamespaceResponse,
    DeleteNamespaceResponse,
    GetAsyncOperationResponse,
    GetNamespaceResponse,
    GetNamespacesResponse,
    UpdateNamespaceRequest,
    UpdateNamespaceResponse,
)
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import jwt, operations
from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import Customer, require_customer
from api.bodies import parse
from api.cloud_json import message_response, parse_message, proto_schema
from api.errors import ApiError
from api.namespace_json import checked_spec, namespace_message
from api.openapi import documented
from tcloud.domain.namespace_names import namespace_id
from tcloud.store import namespaces as store
from tcloud.store.namespaces import NamespaceExists, NamespaceQuotaReached
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

routes = web.RouteTableDef()
TAGS = ("namespaces",)


def _not_found(namespace: str) -> ApiError:
    """Any other account's namespace (or a deleted one) answers 404, as if absent."""
    return ApiError(404, f"namespace {namespace} not found")


async def _owned_row(pool: asyncpg.Pool, namespace: str, account_id: str) -> asyncpg.Record:
    """The caller's namespace row, or 404."""
    row = await store.find_owned_namespace(pool, namespace, account_id)
    if row is None:
        raise _not_found(namespace)
    return row


async def _start(request: web.Request, operation_id: str, start: Callable[[Client], Awaitable[Any]],
                 undo: Callable[[asyncpg.Pool], Awaitable[None]]) -> None:
    """Start the operation's workflow; if it cannot start, ``undo`` the row's change so nothing stays half-done."""
    pool = request.app[POOL]
    try:
        handle = await start(request.app[TEMPORAL])
    except Exception:
        await undo(pool)
        raise
    await set_operation_run_id(pool, operation_id, handle.first_execution_run_id or handle.result_run_id)


def _accepted(operation_id: str, operation_type: str) -> AsyncOperation:
    return AsyncOperation(id=operation_id, operation_type=operation_type, state=AsyncOperation.STATE_PENDING,
                          state_deprecated="pending")


@routes.post("/cloud/namespaces")
@documented("Create a namespace (202 + asyncOperation; the work runs as a workflow)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.CreateNamespaceRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.CreateNamespaceResponse"),
            status=202, tags=TAGS)
async def create_namespace(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    customer.require_writable()
    body = await parse_message(request, CreateNamespaceRequest)
    if body.tags:
        raise ApiError(400, "tags are not supported on this platform")
    name, retention = checked_spec(body.spec)
    ns = namespace_id(name, customer.account_id)
    op_id = operations.new_operation_id(body.async_operation_id)
    try:
        email = await store.reserve_namespace(request.app[POOL], namespace=ns, name=name,
                                              account_id=customer.account_id, retention_days=retention,
                                              operation_id=op_id, workflow_id=create_workflow_id(ns))
    except NamespaceExists as err:
        raise ApiError(409, f"namespace {ns} already exists") from err
    except NamespaceQuotaReached as err:
        raise ApiError(422, f"namespace quota reached: plan {err.plan} allows {err.quota} namespaces") from err
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    params = CreateNamespaceInput(ns, customer.account_id, retention, email)
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        CreateNamespaceWorkflow.run, params, id=create_workflow_id(ns), task_queue=settings.task_queue),
        lambda pool: store.fail_unstarted_namespace_creation(pool, ns))
    return message_response(CreateNamespaceResponse(namespace=ns, async_operation=_accepted(op_id, "CreateNamespace")),
                            status=202)


@routes.get("/cloud/namespaces")
@documented("List the account's namespaces", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetNamespacesResponse"),
            query={"pageSize": "1 to 1000 (default 100)", "pageToken": "nextPageToken of the previous page",
                   "name": "only the namespace with this name"}, tags=TAGS)
async def list_namespaces(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    try:
        size = int(request.query.get("pageSize") or 100)
    except ValueError as err:
        raise ApiError(400, "pageSize must be an integer") from err
    if not 1 <= size <= 1000:
        raise ApiError(400, "pageSize must be between 1 and 1000")
    rows = await store.list_account_namespaces(request.app[POOL], customer.account_id,
                                               after=request.query.get("pageToken", ""),
                                               name=request.query.get("name", ""), limit=size + 1)
    settings = request.app[SETTINGS]
    answer = GetNamespacesResponse(namespaces=[namespace_message(r, settings) for r in rows[:size]])
    if len(rows) > size:
        answer.next_page_token = rows[size - 1]["namespace"]
    return message_response(answer)


@routes.get("/cloud/namespaces/{namespace}")
@documented("Get a namespace", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetNamespaceResponse"), tags=TAGS)
async def get_namespace(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    row = await _owned_row(request.app[POOL], request.match_info["namespace"], customer.account_id)
    return message_response(GetNamespaceResponse(namespace=namespace_message(row, request.app[SETTINGS])))


def _check_version(row: asyncpg.Record, requested: str) -> None:
    if requested and requested != str(row["resource_version"]):
        raise ApiError(409, f"resourceVersion {requested} is stale: the namespace is at {row['resource_version']}")


@routes.post("/cloud/namespaces/{namespace}")
@documented("Update a namespace's retention (202 + asyncOperation)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceResponse"),
            status=202, tags=TAGS)
async def update_namespace(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    ns = request.match_info["namespace"]
    body = await parse_message(request, UpdateNamespaceRequest)
    if body.namespace and body.namespace != ns:
        raise ApiError(400, "namespace in the body differs from the path")
    op_id = operations.new_operation_id(body.async_operation_id)

    def admit(row: asyncpg.Record) -> int:
        """The new retention, or the error that refuses the update (checked on the locked row)."""
        customer.require_writable()
        _, retention = checked_spec(body.spec, name=row["name"], retention_default=row["retention_days"])
        _check_version(row, body.resource_version)
        if row["state"] != "active":
            raise ApiError(409, f"namespace {ns} is {row['state']}: only an active namespace can be updated")
        return retention

    try:
        change = await store.begin_namespace_update(
            request.app[POOL], namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=lambda version: update_workflow_id(ns, version), check=admit)
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    if change is None:
        raise _not_found(ns)
    params = UpdateNamespaceInput(ns, change.checked, change.resource_version)
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        UpdateNamespaceWorkflow.run, params, id=update_workflow_id(ns, change.resource_version),
        task_queue=settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_update(pool, ns))
    return message_response(UpdateNamespaceResponse(async_operation=_accepted(op_id, "UpdateNamespace")), status=202)


@routes.delete("/cloud/namespaces/{namespace}")
@documented("Delete a namespace (202 + asyncOperation); its usage history is kept", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.DeleteNamespaceResponse"),
            query={"resourceVersion": "refuse if the namespace changed since", "asyncOperationId": "your id"},
            status=202, tags=TAGS)
async def delete_namespace(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    ns = request.match_info["namespace"]
    op_id = operations.new_operation_id(request.query.get("asyncOperationId", ""))

    def admit(row: asyncpg.Record) -> None:
        """Refuse the deletion by raising (checked on the locked row)."""
        customer.require_writable()
        _check_version(row, request.query.get("resourceVersion", ""))
        if row["state"] not in ("active", "failed"):
            raise ApiError(409, f"namespace {ns} is {row['state']}: wait until its operation finishes")

    try:
        change = await store.begin_namespace_deletion(
            request.app[POOL], namespace=ns, account_id=customer.account_id, operation_id=op_id,
            workflow_id=delete_workflow_id(ns), check=admit)
    except OperationIdTaken as err:
        raise operations.id_taken(err) from err
    if change is None:
        raise _not_found(ns)
    previous_state = change.previous["state"]
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        DeleteNamespaceWorkflow.run, DeleteNamespaceInput(ns), id=delete_workflow_id(ns),
        task_queue=settings.task_queue),
        lambda pool: store.cancel_unstarted_namespace_deletion(pool, ns, previous_state))
    return message_response(DeleteNamespaceResponse(async_operation=_accepted(op_id, "DeleteNamespace")), status=202)


@routes.get("/cloud/operations/{async_operation_id}")
@documented("The state of an async operation, read from its workflow", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetAsyncOperationResponse"), tags=TAGS)
async def get_operation(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    op_id = request.match_info["async_operation_id"]
    row = await find_account_operation(request.app[POOL], op_id, customer.account_id)
    if row is None:
        raise ApiError(404, f"operation {op_id} not found")
    try:
        op = await operations.describe(request.app[TEMPORAL], row)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        op = AsyncOperation(id=op_id, operation_type=row["operation_type"], state=AsyncOperation.STATE_FAILED,
                            state_deprecated="failed", failure_reason="the operation's workflow never started")
    return message_response(GetAsyncOperationResponse(async_operation=op))


class TokenRequest(BaseModel):
    """What the token may do: ``read`` (describe, list, query, history) or ``write`` (also start, signal,
    terminate, reset and poll as a worker)."""

    model_config = ConfigDict(extra="forbid")
    role: jwt.Role = "write"


TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["token", "namespace", "role", "expiresAt", "address"],
    "properties": {"token": {"type": "string", "description": "RS256 JWT, permissions [<namespace>:<role>]"},
                   "namespace": {"type": "string"}, "role": {"type": "string", "enum": list(jwt.ROLES)},
                   "expiresAt": {"type": "string", "format": "date-time"},
                   "address": {"type": "string", "description": "the Temporal frontend to send it to (gRPC)"}},
}


@routes.post("/cloud/namespaces/{namespace}/token")
@documented("A short-lived JWT for the namespace's data plane (Temporal's default JWT claim mapper format); "
            "call again before it expires to refresh", auth="customer", request=TokenRequest,
            response=TOKEN_SCHEMA, tags=TAGS)
async def namespace_token(request: web.Request) -> web.Response:
    customer: Customer = await require_customer(request)
    row = await _owned_row(request.app[POOL], request.match_info["namespace"], customer.account_id)
    customer.require_writable()
    role = (await parse(request, TokenRequest) if request.can_read_body else TokenRequest()).role
    if row["state"] not in ("active", "updating"):
        raise ApiError(409, f"namespace {row['namespace']} is {row['state']}")
    settings = request.app[SETTINGS]
    token, expires = jwt.issue(settings, account_id=customer.account_id, namespace=row["namespace"], role=role)
    return web.json_response({"token": token, "namespace": row["namespace"], "role": role,
                              "expiresAt": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z"),
                              "address": settings.temporal_public_address})


@routes.get("/.well-known/jwks.json")
@documented("The public keys that verify data-plane tokens (for Temporal's jwtKeyProvider)", auth="none",
            response={"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
            tags=TAGS)
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(jwt.jwks(request.app[SETTINGS]), headers={"Cache-Control": "max-age=300"})
