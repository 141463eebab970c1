"""Routes: the account's API keys (Cloud Ops paths and JSON; the token is shown once, at creation)."""

from __future__ import annotations

from datetime import UTC

import asyncpg
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    DeleteApiKeyResponse,
    GetApiKeysResponse,
)
from temporalio.api.cloud.identity.v1 import ApiKey, ApiKeySpec
from temporalio.api.cloud.resource.v1 import ResourceState

from api.appkeys import POOL
from api.auth import require_customer
from api.cloud_json import message_response, parse_message, proto_schema
from api.errors import ApiError
from api.openapi import documented
from tcloud.store import accounts as store
from tcloud.store.accounts import ExpiryNotInFuture, KeyLimitReached, KeyNotFound, LastActiveKey

routes = web.RouteTableDef()
TAGS = ("api-keys",)
MAX_ACTIVE_KEYS = 50


def _ts(value: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def _key_message(row: asyncpg.Record) -> ApiKey:
    spec = ApiKeySpec(owner_id=row["account_id"], display_name=row["display_name"], description=row["description"])
    if row["expires_at"]:
        spec.expiry_time.CopyFrom(_ts(row["expires_at"]))
    key = ApiKey(id=row["id"], spec=spec, state=ResourceState.RESOURCE_STATE_ACTIVE, state_deprecated="active")
    key.created_time.CopyFrom(_ts(row["created_at"]))
    return key


@routes.post("/cloud/api-keys")
@documented("Create an API key; its token is in this answer only", auth="customer",
            request=proto_schema("temporal.api.cloud.cloudservice.v1.CreateApiKeyRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.CreateApiKeyResponse"), tags=TAGS)
async def create_api_key(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    customer.require_writable()
    body = await parse_message(request, CreateApiKeyRequest)
    spec = body.spec
    if spec.owner_id and spec.owner_id != customer.account_id:
        raise ApiError(400, "spec.ownerId must be your account id (or empty)")
    if spec.disabled:
        raise ApiError(400, "spec.disabled is not supported: delete a key to revoke it")
    if len(spec.display_name) > 200 or len(spec.description) > 1000:
        raise ApiError(400, "spec.displayName is limited to 200 characters, spec.description to 1000")
    expires = spec.expiry_time.ToDatetime(tzinfo=UTC) if spec.HasField("expiry_time") else None
    try:
        key = await store.issue_key_within_limit(request.app[POOL], customer.account_id, limit=MAX_ACTIVE_KEYS,
                                                 display_name=spec.display_name, description=spec.description,
                                                 expires_at=expires)
    except ExpiryNotInFuture as err:
        raise ApiError(400, "spec.expiryTime must be in the future") from err
    except KeyLimitReached as err:
        raise ApiError(422, f"an account holds at most {MAX_ACTIVE_KEYS} active API keys") from err
    return message_response(CreateApiKeyResponse(key_id=key.key_id, token=key.token))


@routes.get("/cloud/api-keys")
@documented("List the account's API keys (never their tokens)", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetApiKeysResponse"), tags=TAGS)
async def list_api_keys(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    rows = await store.list_active_keys(request.app[POOL], customer.account_id)
    return message_response(GetApiKeysResponse(api_keys=[_key_message(r) for r in rows]))


@routes.delete("/cloud/api-keys/{key_id}")
@documented("Revoke an API key (the last active key of an account cannot be revoked)", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.DeleteApiKeyResponse"), tags=TAGS)
async def delete_api_key(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    key_id = request.match_info["key_id"]
    try:
        await store.revoke_key(request.app[POOL], customer.account_id, key_id)
    except KeyNotFound as err:
        raise ApiError(404, f"API key {key_id} not found") from err
    except LastActiveKey as err:
        raise ApiError(409, "this is the account's last active API key: create another before revoking it") from err
    return message_response(DeleteApiKeyResponse())
