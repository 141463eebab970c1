"""Routes: the account's API keys (Cloud Ops paths and JSON; the token is shown once, at creation).

The Cloud Ops methods themselves are in api/cloud_service.py, which the gRPC server calls too.
"""

from __future__ import annotations

from aiohttp import web
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    DeleteApiKeyRequest,
    GetApiKeyRequest,
    GetApiKeysRequest,
    GetCurrentIdentityRequest,
    UpdateApiKeyRequest,
)

from api import cloud_service
from api.auth import require_customer
from api.cloud_json import message_response, parse_message, proto_schema, query_page_size
from api.cloud_service import Call
from api.errors import ApiError
from api.openapi import documented

routes = web.RouteTableDef()
TAGS = ("api-keys",)


async def _call(request: web.Request) -> Call:
    return Call.of(request.app, await require_customer(request))


@routes.post("/cloud/api-keys")
@documented("Create an API key; its token is in this answer only", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.CreateApiKeyRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.CreateApiKeyResponse"), tags=TAGS)
async def create_api_key(request: web.Request) -> web.Response:
    call = await _call(request)
    call.customer.require_writable()
    body = await parse_message(request, CreateApiKeyRequest)
    return message_response(await cloud_service.create_api_key(call, body))


@routes.get("/cloud/api-keys")
@documented("List the account's API keys (never their tokens), oldest first", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetApiKeysResponse"),
            query={"pageSize": "1 to 1000 (default 100)", "pageToken": "nextPageToken of the previous page",
                   "ownerId": "only the keys of this user or service account"}, tags=TAGS)
async def list_api_keys(request: web.Request) -> web.Response:
    call = await _call(request)
    size = query_page_size(request)
    listing = GetApiKeysRequest(page_size=size, page_token=request.query.get("pageToken", ""),
                                owner_id=request.query.get("ownerId", ""))
    return message_response(await cloud_service.get_api_keys(call, listing))


@routes.get("/cloud/api-keys/{key_id}")
@documented("One of the account's active API keys (never its token)", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetApiKeyResponse"), tags=TAGS)
async def get_api_key(request: web.Request) -> web.Response:
    call = await _call(request)
    key = GetApiKeyRequest(key_id=request.match_info["key_id"])
    return message_response(await cloud_service.get_api_key(call, key))


@routes.post("/cloud/api-keys/{key_id}")
@documented("Rename, enable or disable an API key (spec.disabled; owner and expiry cannot change)", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateApiKeyRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.UpdateApiKeyResponse"), tags=TAGS)
async def update_api_key(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message(request, UpdateApiKeyRequest)
    key_id = request.match_info["key_id"]
    if body.key_id and body.key_id != key_id:
        raise ApiError(400, "keyId in the body differs from the path")
    body.key_id = key_id
    return message_response(await cloud_service.update_api_key(call, body))


@routes.delete("/cloud/api-keys/{key_id}")
@documented("Revoke an API key (an account admin must keep a usable key)", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.DeleteApiKeyResponse"),
            query={"resourceVersion": "refuse if the key changed since", "asyncOperationId": "your id"}, tags=TAGS)
async def delete_api_key(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.delete_api_key(
        call, DeleteApiKeyRequest(key_id=request.match_info["key_id"],
                                  resource_version=request.query.get("resourceVersion", ""),
                                  async_operation_id=request.query.get("asyncOperationId", ""))))


@routes.get("/cloud/current-identity")
@documented("Who is calling: the API key of this request and the user or service account owning it", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetCurrentIdentityResponse"), tags=TAGS)
async def get_current_identity(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.get_current_identity(call, GetCurrentIdentityRequest()))
