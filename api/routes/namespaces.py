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
from api.auth import Customer, require_customer
from api.bodies import parse
from api.cloud_json import message_response, parse_message, proto_schema
from api.errors import ApiError
from api.keys import POOL, SETTINGS, TEMPORAL
from api.namespace_json import checked_spec, namespace_message
from api.openapi import documented
from tcloud.namespace_names import namespace_id
from tcloud.plans import NAMESPACE_QUOTA
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
LIVE = ("provisioning", "active", "updating", "deleting")  # states that count against the quota


async def _owned_row(conn: asyncpg.Connection | asyncpg.Pool, namespace: str, account_id: str, *,
                     lock: bool = False) -> asyncpg.Record:
    """The caller's namespace row; any other account's (or a deleted one) answers 404, as if absent."""
    row = await conn.fetchrow(
        "SELECT * FROM namespaces WHERE namespace = $1 AND account_id = $2 AND state <> 'deleted'"
        + (" FOR UPDATE" if lock else ""),
        namespace, account_id,
    )
    if row is None:
        raise ApiError(404, f"namespace {namespace} not found")
    return row


async def _start(request: web.Request, operation_id: str, start: Callable[[Client], Awaitable[Any]],
                 undo: str, *args: object) -> None:
    """Start the operation's workflow; if it cannot start, run ``undo`` (SQL) so nothing stays half-done."""
    pool = request.app[POOL]
    try:
        handle = await start(request.app[TEMPORAL])
    except Exception:
        await pool.execute(undo, *args)
        raise
    await operations.set_run_id(pool, operation_id, handle.first_execution_run_id or handle.result_run_id)


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
    async with request.app[POOL].acquire() as conn, conn.transaction():
        account = await conn.fetchrow("SELECT plan, email FROM accounts WHERE id = $1 FOR UPDATE",
                                      customer.account_id)
        existing = await conn.fetchval("SELECT state FROM namespaces WHERE namespace = $1 FOR UPDATE", ns)
        if existing in LIVE:
            raise ApiError(409, f"namespace {ns} already exists")
        held = await conn.fetchval(
            "SELECT count(*) FROM namespaces WHERE account_id = $1 AND state = ANY($2::text[])",
            customer.account_id, list(LIVE))
        quota = NAMESPACE_QUOTA.get(account["plan"], 0)
        if held >= quota:
            raise ApiError(422, f"namespace quota reached: plan {account['plan']} allows {quota} namespaces")
        await conn.execute(
            """INSERT INTO namespaces (namespace, name, account_id, state, retention_days, async_operation_id)
               VALUES ($1, $2, $3, 'provisioning', $4, $5)
               ON CONFLICT (namespace) DO UPDATE SET
                   state = 'provisioning', retention_days = $4, async_operation_id = $5, failure_reason = NULL,
                   created_at = now(), updated_at = now(), deleted_at = NULL,
                   resource_version = namespaces.resource_version + 1""",
            ns, name, customer.account_id, retention, op_id)
        await operations.record(conn, operation_id=op_id, account_id=customer.account_id,
                                operation_type="CreateNamespace", resource=ns, workflow_id=create_workflow_id(ns))
    params = CreateNamespaceInput(ns, customer.account_id, retention, account["email"])
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        CreateNamespaceWorkflow.run, params, id=create_workflow_id(ns), task_queue=settings.task_queue),
        "UPDATE namespaces SET state = 'failed', failure_reason = 'the workflow could not start' "
        "WHERE namespace = $1 AND state = 'provisioning'", ns)
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
    rows = await request.app[POOL].fetch(
        """SELECT * FROM namespaces WHERE account_id = $1 AND state <> 'deleted'
              AND namespace > $2 AND ($3 = '' OR name = $3)
            ORDER BY namespace LIMIT $4""",
        customer.account_id, request.query.get("pageToken", ""), request.query.get("name", ""), size + 1)
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
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _owned_row(conn, ns, customer.account_id, lock=True)
        customer.require_writable()
        _, retention = checked_spec(body.spec, name=row["name"], retention_default=row["retention_days"])
        _check_version(row, body.resource_version)
        if row["state"] != "active":
            raise ApiError(409, f"namespace {ns} is {row['state']}: only an active namespace can be updated")
        version = await conn.fetchval(
            """UPDATE namespaces SET state = 'updating', resource_version = resource_version + 1,
                      async_operation_id = $2, updated_at = now()
                WHERE namespace = $1 RETURNING resource_version""", ns, op_id)
        workflow_id = update_workflow_id(ns, version)
        await operations.record(conn, operation_id=op_id, account_id=customer.account_id,
                                operation_type="UpdateNamespace", resource=ns, workflow_id=workflow_id)
    params = UpdateNamespaceInput(ns, retention, version)
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        UpdateNamespaceWorkflow.run, params, id=workflow_id, task_queue=settings.task_queue),
        "UPDATE namespaces SET state = 'active' WHERE namespace = $1 AND state = 'updating'", ns)
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
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _owned_row(conn, ns, customer.account_id, lock=True)
        customer.require_writable()
        _check_version(row, request.query.get("resourceVersion", ""))
        if row["state"] not in ("active", "failed"):
            raise ApiError(409, f"namespace {ns} is {row['state']}: wait until its operation finishes")
        await conn.execute(
            """UPDATE namespaces SET state = 'deleting', resource_version = resource_version + 1,
                      async_operation_id = $2, updated_at = now() WHERE namespace = $1""", ns, op_id)
        await operations.record(conn, operation_id=op_id, account_id=customer.account_id,
                                operation_type="DeleteNamespace", resource=ns, workflow_id=delete_workflow_id(ns))
    settings = request.app[SETTINGS]
    await _start(request, op_id, lambda c: c.start_workflow(
        DeleteNamespaceWorkflow.run, DeleteNamespaceInput(ns), id=delete_workflow_id(ns),
        task_queue=settings.task_queue),
        "UPDATE namespaces SET state = $2 WHERE namespace = $1 AND state = 'deleting'", ns, row["state"])
    return message_response(DeleteNamespaceResponse(async_operation=_accepted(op_id, "DeleteNamespace")), status=202)


@routes.get("/cloud/operations/{async_operation_id}")
@documented("The state of an async operation, read from its workflow", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetAsyncOperationResponse"), tags=TAGS)
async def get_operation(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    op_id = request.match_info["async_operation_id"]
    row = await request.app[POOL].fetchrow(
        "SELECT * FROM async_operations WHERE id = $1 AND account_id = $2", op_id, customer.account_id)
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
