"""Routes: accounts — the operator's (create, list, suspend, resume), the customer's own, and self-serve signup."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.cloud.account.v1 import Account
from temporalio.api.cloud.cloudservice.v1 import GetAccountResponse
from temporalio.api.cloud.resource.v1 import ResourceState

from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import require_customer, require_operator
from api.bodies import parse
from api.cloud_json import message_response, proto_schema
from api.errors import ApiError
from api.openapi import documented
from tcloud.domain.plans import DEFAULT_PLAN, Plan
from tcloud.store import accounts as store
from tcloud.store.accounts import AccountExists
from workflows.accounts import AccountSetupInput, AccountSetupWorkflow, account_setup_workflow_id

routes = web.RouteTableDef()
TAGS = ("accounts",)
_EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254, pattern=_EMAIL)


class AccountCreateRequest(SignupRequest):
    id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9]{2,31}$",
                           description="3 to 32 letters and digits, starting with a letter; from name if absent")
    plan: Plan = DEFAULT_PLAN


class SuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="suspended by the operator", max_length=500)


class AccountView(BaseModel):
    id: str
    name: str
    email: str
    plan: str
    status: str
    statusReason: str | None
    stripeCustomerId: str | None
    createdAt: str


class CreatedAccount(BaseModel):
    account: AccountView
    apiKey: dict[str, str] = Field(description="{id, token}: the token is shown only here, once")
    setupWorkflowId: str


class AccountList(BaseModel):
    accounts: list[AccountView]


def _view(row: asyncpg.Record) -> dict[str, Any]:
    return AccountView(id=row["id"], name=row["name"], email=row["email"], plan=row["plan"], status=row["status"],
                       statusReason=row["status_reason"], stripeCustomerId=row["stripe_customer_id"],
                       createdAt=row["created_at"].isoformat()).model_dump()


async def _create(request: web.Request, body: SignupRequest, *, account_id: str | None, plan: str) -> web.Response:
    """Store the account and its first key, then start the workflow that creates its Stripe customer."""
    pool = request.app[POOL]
    try:
        created = await store.create_account_with_first_key(pool, account_id=account_id, name=body.name,
                                                            email=body.email, plan=plan)
    except AccountExists as err:
        raise ApiError(409, str(err)) from err
    new_id = created.row["id"]
    workflow_id = account_setup_workflow_id(new_id)
    try:
        await request.app[TEMPORAL].start_workflow(AccountSetupWorkflow.run, AccountSetupInput(new_id),
                                                   id=workflow_id, task_queue=request.app[SETTINGS].task_queue)
    except Exception:
        await store.delete_new_account(pool, new_id)  # nothing else refers to it yet: take it back
        raise
    key = created.key
    return web.json_response({"account": _view(created.row), "apiKey": {"id": key.key_id, "token": key.token},
                              "setupWorkflowId": workflow_id}, status=201)


@routes.post("/admin/accounts")
@documented("Create an account (its Stripe customer is created by workflow account/<id>/create)", auth="operator",
            request=AccountCreateRequest, response=CreatedAccount, status=201, tags=TAGS)
async def create_account(request: web.Request) -> web.Response:
    require_operator(request)
    body = await parse(request, AccountCreateRequest)
    return await _create(request, body, account_id=body.id, plan=body.plan)


@routes.post("/signup")
@documented("Self-serve signup (only when TCLOUD_SIGNUP_ENABLED=true; 404 otherwise)", auth="none",
            request=SignupRequest, response=CreatedAccount, status=201, tags=TAGS)
async def signup(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].signup_enabled:
        raise ApiError(404, "self-serve signup is disabled on this platform")
    body = await parse(request, SignupRequest)
    return await _create(request, body, account_id=None, plan=DEFAULT_PLAN)


@routes.get("/admin/accounts")
@documented("List accounts", auth="operator", response=AccountList,
            query={"status": "only accounts in this status"}, tags=TAGS)
async def list_accounts(request: web.Request) -> web.Response:
    require_operator(request)
    status = request.query.get("status", "")
    rows = await store.list_accounts(request.app[POOL], status)
    return web.json_response({"accounts": [_view(r) for r in rows]})


async def _account_row(request: web.Request) -> asyncpg.Record:
    row = await store.find_account(request.app[POOL], request.match_info["account_id"])
    if row is None:
        raise ApiError(404, f"account {request.match_info['account_id']} not found")
    return row


@routes.get("/admin/accounts/{account_id}")
@documented("Get an account", auth="operator", response=AccountView, tags=TAGS)
async def get_account_admin(request: web.Request) -> web.Response:
    require_operator(request)
    return web.json_response(_view(await _account_row(request)))


async def _set_status(request: web.Request, status: str, reason: str | None) -> web.Response:
    row = await _account_row(request)
    if row["status"] == "closed":
        raise ApiError(409, f"account {row['id']} is closed")
    row = await store.set_account_status(request.app[POOL], row["id"], status, reason)
    return web.json_response(_view(row))


@routes.post("/admin/accounts/{account_id}/suspend")
@documented("Suspend an account: it keeps reading but cannot create or change resources", auth="operator",
            request=SuspendRequest, response=AccountView, tags=TAGS)
async def suspend_account(request: web.Request) -> web.Response:
    require_operator(request)
    body = await parse(request, SuspendRequest) if request.can_read_body else SuspendRequest()
    return await _set_status(request, "suspended", body.reason)


@routes.post("/admin/accounts/{account_id}/resume")
@documented("Resume a suspended account", auth="operator", response=AccountView, tags=TAGS)
async def resume_account(request: web.Request) -> web.Response:
    require_operator(request)
    return await _set_status(request, "active", None)


_STATE = {"active": ResourceState.RESOURCE_STATE_ACTIVE, "suspended": ResourceState.RESOURCE_STATE_SUSPENDED,
          "closed": ResourceState.RESOURCE_STATE_DELETED}


@routes.get("/cloud/account")
@documented("The caller's account", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetAccountResponse"), tags=TAGS)
async def get_account(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    row = await store.find_account(request.app[POOL], customer.account_id)
    if row is None:  # its key was checked a moment ago: only an account deleted since lands here
        raise ApiError(404, f"account {customer.account_id} not found")
    account = Account(id=row["id"], state=_STATE[row["status"]],
                      resource_version=str(int(row["updated_at"].timestamp() * 1_000_000)))
    return message_response(GetAccountResponse(account=account))
