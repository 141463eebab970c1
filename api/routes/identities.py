"""Routes: users and service accounts, their account roles and namespace access (Cloud Ops paths and JSON), and the
operator's read-only view of an account's identities.

The Cloud Ops methods themselves are in api/cloud_service.py, which the gRPC server calls too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from temporalio.api.cloud.cloudservice.v1 import (
    CreateServiceAccountRequest,
    CreateUserRequest,
    DeleteServiceAccountRequest,
    DeleteUserRequest,
    GetServiceAccountRequest,
    GetServiceAccountsRequest,
    GetUserRequest,
    GetUsersRequest,
    SetServiceAccountNamespaceAccessRequest,
    SetUserNamespaceAccessRequest,
    UpdateServiceAccountRequest,
    UpdateUserRequest,
)

from api import cloud_service
from api.appkeys import POOL
from api.auth import require_customer, require_operator
from api.cloud_json import message_response, parse_message_at, proto_schema, query_page_size
from api.cloud_service import Call
from api.errors import ApiError
from api.openapi import documented
from tcloud.store import accounts as account_store
from tcloud.store import identities as identity_store

routes = web.RouteTableDef()
TAGS = ("identities",)
_PAGING = {"pageSize": "1 to 1000 (default 100)", "pageToken": "nextPageToken of the previous page"}
_DELETING = {"resourceVersion": "refuse if it changed since", "asyncOperationId": "your id"}


def _schema(name: str) -> dict[str, object]:
    return proto_schema(f"temporal.api.cloud.cloudservice.v1.{name}")


async def _call(request: web.Request) -> Call:
    return Call.of(request.app, await require_customer(request))


# --- Users ------------------------------------------------------------------------------------------------------


@routes.post("/cloud/users")
@documented("Add a user with an account role and namespace access (admins)", auth="customer",
            request=_schema("CreateUserRequest"), response=_schema("CreateUserResponse"), tags=TAGS)
async def create_user(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.create_user(call, await parse_message_at(request, CreateUserRequest)))


@routes.get("/cloud/users")
@documented("List the account's users", auth="customer", response=_schema("GetUsersResponse"),
            query={**_PAGING, "email": "only the user with this email",
                   "namespace": "only users with access to this namespace"}, tags=TAGS)
async def get_users(request: web.Request) -> web.Response:
    call = await _call(request)
    listing = GetUsersRequest(page_size=query_page_size(request), page_token=request.query.get("pageToken", ""),
                              email=request.query.get("email", ""), namespace=request.query.get("namespace", ""))
    return message_response(await cloud_service.get_users(call, listing))


@routes.get("/cloud/users/{user_id}")
@documented("Get a user", auth="customer", response=_schema("GetUserResponse"), tags=TAGS)
async def get_user(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.get_user(call, GetUserRequest(user_id=request.match_info["user_id"])))


@routes.post("/cloud/users/{user_id}")
@documented("Change a user's email, account role and namespace access (admins; resourceVersion)",
            auth="customer", request=_schema("UpdateUserRequest"), response=_schema("UpdateUserResponse"), tags=TAGS)
async def update_user(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, UpdateUserRequest, user_id=request.match_info["user_id"])
    return message_response(await cloud_service.update_user(call, body))


@routes.delete("/cloud/users/{user_id}")
@documented("Remove a user; its API keys are revoked (admins)", auth="customer",
            response=_schema("DeleteUserResponse"), query=_DELETING, tags=TAGS)
async def delete_user(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.delete_user(call, DeleteUserRequest(
        user_id=request.match_info["user_id"], resource_version=request.query.get("resourceVersion", ""),
        async_operation_id=request.query.get("asyncOperationId", ""))))


@routes.post("/cloud/namespaces/{namespace}/users/{user_id}/access")
@documented("Set (or, with no permission, remove) a user's access to a namespace (admins)", auth="customer",
            request=_schema("SetUserNamespaceAccessRequest"), response=_schema("SetUserNamespaceAccessResponse"),
            tags=TAGS)
async def set_user_namespace_access(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, SetUserNamespaceAccessRequest, namespace=request.match_info["namespace"],
                                  user_id=request.match_info["user_id"])
    return message_response(await cloud_service.set_user_namespace_access(call, body))


# --- Service accounts -------------------------------------------------------------------------------------------


@routes.post("/cloud/service-accounts")
@documented("Add a service account with an account role and namespace access (admins)", auth="customer",
            request=_schema("CreateServiceAccountRequest"), response=_schema("CreateServiceAccountResponse"),
            tags=TAGS)
async def create_service_account(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, CreateServiceAccountRequest)
    return message_response(await cloud_service.create_service_account(call, body))


@routes.get("/cloud/service-accounts")
@documented("List the account's service accounts", auth="customer", response=_schema("GetServiceAccountsResponse"),
            query=_PAGING, tags=TAGS)
async def get_service_accounts(request: web.Request) -> web.Response:
    call = await _call(request)
    listing = GetServiceAccountsRequest(page_size=query_page_size(request),
                                        page_token=request.query.get("pageToken", ""))
    return message_response(await cloud_service.get_service_accounts(call, listing))


@routes.get("/cloud/service-accounts/{service_account_id}")
@documented("Get a service account", auth="customer", response=_schema("GetServiceAccountResponse"), tags=TAGS)
async def get_service_account(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.get_service_account(
        call, GetServiceAccountRequest(service_account_id=request.match_info["service_account_id"])))


@routes.post("/cloud/service-accounts/{service_account_id}")
@documented("Change a service account's name, description, role and namespace access (admins; resourceVersion)",
            auth="customer", request=_schema("UpdateServiceAccountRequest"),
            response=_schema("UpdateServiceAccountResponse"), tags=TAGS)
async def update_service_account(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, UpdateServiceAccountRequest,
                                  service_account_id=request.match_info["service_account_id"])
    return message_response(await cloud_service.update_service_account(call, body))


@routes.delete("/cloud/service-accounts/{service_account_id}")
@documented("Remove a service account; its API keys are revoked (admins)", auth="customer",
            response=_schema("DeleteServiceAccountResponse"), query=_DELETING, tags=TAGS)
async def delete_service_account(request: web.Request) -> web.Response:
    call = await _call(request)
    return message_response(await cloud_service.delete_service_account(call, DeleteServiceAccountRequest(
        service_account_id=request.match_info["service_account_id"],
        resource_version=request.query.get("resourceVersion", ""),
        async_operation_id=request.query.get("asyncOperationId", ""))))


@routes.post("/cloud/namespaces/{namespace}/service-accounts/{service_account_id}/access")
@documented("Set (or, with no permission, remove) a service account's access to a namespace (admins)",
            auth="customer", request=_schema("SetServiceAccountNamespaceAccessRequest"),
            response=_schema("SetServiceAccountNamespaceAccessResponse"), tags=TAGS)
async def set_service_account_namespace_access(request: web.Request) -> web.Response:
    call = await _call(request)
    body = await parse_message_at(request, SetServiceAccountNamespaceAccessRequest,
                                  namespace=request.match_info["namespace"],
                                  service_account_id=request.match_info["service_account_id"])
    return message_response(await cloud_service.set_service_account_namespace_access(call, body))


# --- The operator's view ----------------------------------------------------------------------------------------

OPERATOR_LIMIT = 1000


class KeyCounts(BaseModel):
    active: int = Field(description="usable keys: neither revoked, expired nor disabled")
    disabled: int = Field(description="disabled keys (not revoked, not expired)")


class IdentityView(BaseModel):
    id: str
    kind: str = Field(description="user or service_account")
    name: str = Field(description="a user's email, a service account's name")
    description: str
    role: str = Field(description="account role: admin, developer, finance_admin or read")
    namespaceAccess: dict[str, str] = Field(description="namespace -> admin, write or read")
    keys: KeyCounts
    state: str = Field(description="active or deleted")
    createdAt: str
    deletedAt: str | None


class AccountIdentities(BaseModel):
    accountId: str
    users: list[IdentityView]
    serviceAccounts: list[IdentityView]
    truncated: bool = Field(description=f"true when the account has more than {OPERATOR_LIMIT} identities")


def _identity_view(row: dict[str, Any]) -> IdentityView:
    return IdentityView(id=row["id"], kind=row["kind"], name=row["name"], description=row["description"],
                        role=row["account_role"], namespaceAccess=dict(sorted(row["namespace_access"].items())),
                        keys=KeyCounts(active=row["active_keys"], disabled=row["disabled_keys"]),
                        state=row["state"], createdAt=row["created_at"].isoformat(),
                        deletedAt=row["deleted_at"].isoformat() if row["deleted_at"] else None)


@routes.get("/admin/accounts/{account_id}/identities")
@documented("An account's users and service accounts (deleted ones too) with their roles, namespace access and "
            "API key counts (read-only)", auth="operator", response=AccountIdentities, tags=("operator", *TAGS))
async def get_account_identities(request: web.Request) -> web.Response:
    require_operator(request)
    pool = request.app[POOL]
    account_id = request.match_info["account_id"]
    if await account_store.find_account(pool, account_id) is None:
        raise ApiError(404, f"account {account_id} not found")
    rows = await identity_store.account_identities(pool, account_id, limit=OPERATOR_LIMIT + 1)
    views = [_identity_view(r) for r in rows[:OPERATOR_LIMIT]]
    return web.json_response(AccountIdentities(
        accountId=account_id, users=[v for v in views if v.kind == "user"],
        serviceAccounts=[v for v in views if v.kind == "service_account"],
        truncated=len(rows) > OPERATOR_LIMIT).model_dump())
