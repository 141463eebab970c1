"""Routes: namespaces, their async operations and data-plane tokens (Cloud Ops API paths and JSON).

The Cloud Ops methods themselves are in api/cloud_service.py, which the gRPC server calls too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from temporalio.api.cloud.cloudservice.v1 import (
    CreateNamespaceRequest,
    DeleteNamespaceRequest,
    GetAsyncOperationRequest,
    GetNamespaceRequest,
    GetNamespacesRequest,
    RenameCustomSearchAttributeRequest,
    UpdateNamespaceRequest,
    UpdateNamespaceTagsRequest,
)

from api import cloud_service, jwt
from api.appkeys import SETTINGS
from api.auth import Customer, require_customer
from api.bodies import parse
from api.cloud_json import message_response, parse_message, parse_message_at, proto_schema, query_page_size
from api.cloud_service import Call
from api.errors import ApiError
from api.namespace_json import namespaces_json
from api.openapi import documented
from tcloud.domain import access

routes = web.RouteTableDef()
TAGS = ("namespaces",)


async def _call(request: web.Request) -> Call:
    return Call.of(request.app, await require_customer(request))


@routes.post("/cloud/namespaces")
@documented("Create a namespace (202 + asyncOperation; the work runs as a workflow)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.CreateNamespaceRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.CreateNamespaceResponse"),
            status=202, tags=TAGS)
async def create_namespace(request: web.Request) -> web.Response:
    call = await _call(request)
    call.customer.require_writable()
    body = await parse_message(request, CreateNamespaceRequest)
    return message_response(await cloud_service.create_namespace(call, body), status=202)


@routes.get("/cloud/namespaces")
@documented("List the account's namespaces", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetNamespacesResponse"),
            query={"pageSize": "1 to 1000 (default 100)", "pageToken": "nextPageToken of the previous page",
                   "name": "only the namespace with this name"}, tags=TAGS)
async def list_namespaces(request: web.Request) -> web.Response:
    call = await _call(request)
    size = query_page_size(request)
    listing = GetNamespacesRequest(page_size=size, page_token=request.query.get("pageToken", ""),
                                   name=request.query.get("name", ""))
    rows, next_page_token = await cloud_service.namespace_page(call, listing)  # GetNamespaces' rules
    return web.Response(body=namespaces_json(rows, next_page_token, call.settings), content_type="application/json",
                        charset="utf-8")


@routes.get("/cloud/namespaces/{namespace}")
@documented("Get a namespace", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetNamespaceResponse"), tags=TAGS)
async def get_namespace(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.get_namespace(
        call, GetNamespaceRequest(namespace=request.match_info["namespace"])))


@routes.post("/cloud/namespaces/{namespace}")
@documented("Update a namespace's retention or add custom search attributes (202 + asyncOperation)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceResponse"),
            status=202, tags=TAGS)
async def update_namespace(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, UpdateNamespaceRequest, namespace=request.match_info["namespace"])
    return message_response(await cloud_service.update_namespace(call, body), status=202)


@routes.post("/cloud/namespaces/{namespace}/update-tags")
@documented("Set and remove a namespace's tags (account admins; the operation is fulfilled in the answer)",
            auth="customer", request=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceTagsRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateNamespaceTagsResponse"), tags=TAGS)
async def update_namespace_tags(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, UpdateNamespaceTagsRequest, namespace=request.match_info["namespace"])
    return message_response(await cloud_service.update_namespace_tags(call, body))


@routes.post("/cloud/namespaces/{namespace}/rename-custom-search-attribute")
@documented("Rename a custom search attribute (202 + asyncOperation; values already indexed keep their name's new "
            "spelling)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.RenameCustomSearchAttributeRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.RenameCustomSearchAttributeResponse"),
            status=202, tags=TAGS)
async def rename_custom_search_attribute(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, RenameCustomSearchAttributeRequest,
                                  namespace=request.match_info["namespace"])
    return message_response(await cloud_service.rename_custom_search_attribute(call, body), status=202)


@routes.delete("/cloud/namespaces/{namespace}")
@documented("Delete a namespace (202 + asyncOperation); its usage history is kept", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.DeleteNamespaceResponse"),
            query={"resourceVersion": "refuse if the namespace changed since", "asyncOperationId": "your id"},
            status=202, tags=TAGS)
async def delete_namespace(request: web.Request) -> web.Response:
    call = await _call(request)
    deletion = DeleteNamespaceRequest(namespace=request.match_info["namespace"],
                                      resource_version=request.query.get("resourceVersion", ""),
                                      async_operation_id=request.query.get("asyncOperationId", ""))
    return message_response(await cloud_service.delete_namespace(call, deletion), status=202)


@routes.get("/cloud/operations/{async_operation_id}")
@documented("The state of an async operation, read from its workflow", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetAsyncOperationResponse"), tags=TAGS)
async def get_operation(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.get_async_operation(
        call, GetAsyncOperationRequest(async_operation_id=request.match_info["async_operation_id"])))


class TokenRequest(BaseModel):
    """What the token may do: ``read`` (describe, list, query, history) or ``write`` (also start, signal,
    terminate, reset and poll as a worker); by default the most the key's owner may have on the namespace."""

    model_config = ConfigDict(extra="forbid")
    role: jwt.Role | None = None


TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["token", "namespace", "role", "expiresAt", "address"],
    "properties": {"token": {"type": "string", "description": "RS256 JWT, permissions [<namespace>:<role>]"},
                   "namespace": {"type": "string"}, "role": {"type": "string", "enum": list(jwt.ROLES)},
                   "expiresAt": {"type": "string", "format": "date-time"},
                   "address": {"type": "string", "description": "the Temporal frontend to send it to (gRPC)"}},
}


@routes.post("/cloud/namespaces/{namespace}/token")
@documented("A short-lived JWT for the namespace's data plane (Temporal's default JWT claim mapper format); "
            "call again before it expires to refresh; limited by the key owner's role and namespace access",
            auth="customer", request=TokenRequest,
            response=TOKEN_SCHEMA, tags=TAGS)
async def namespace_token(request: web.Request) -> web.Response:
    customer: Customer = await require_customer(request)
    row = await cloud_service.owned_namespace(Call.of(request.app, customer), request.match_info["namespace"])
    customer.require_writable()
    requested = (await parse(request, TokenRequest) if request.can_read_body else TokenRequest()).role
    most = access.data_plane_role(customer.role, customer.namespace_access, row["namespace"])
    if most is None:
        raise ApiError(403, f"the account role {customer.role} without access to {row['namespace']} "
                            "gets no data-plane token for it")
    if requested == "write" and most == "read":
        raise ApiError(403, f"read access to {row['namespace']} gets read tokens only")
    role: jwt.Role = requested or most
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
