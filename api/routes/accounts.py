"""Routes: accounts — the operator's (create, list, suspend, resume, close, reopen), the customer's own (read,
close, reopen), and self-serve signup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.cloud.cloudservice.v1 import GetAccountRequest
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import cloud_service
from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import require_customer, require_operator
from api.bodies import parse
from api.cloud_json import message_response, proto_schema
from api.cloud_service import Call
from api.errors import ApiError
from api.openapi import documented
from tcloud.domain.plans import DEFAULT_PLAN, Plan
from tcloud.store import accounts as store
from tcloud.store.accounts import AccountExists, ClosureRefused
from workers.cap_billing import run_input
from workflows.account_closure import (
    AccountClosureInput,
    AccountClosureWorkflow,
    ReopenNotice,
    account_closure_workflow_id,
)
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
    closedAt: str | None = Field(default=None, description="when it was closed: usage after this is not billed")
    reopenableUntil: str | None = Field(default=None, description="while closing: the end of the grace, when its "
                                                                  "namespaces are deleted and the final invoice made")


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str = Field(description="the account's id, to confirm that this account is the one to close")
    reason: str = Field(default="closed by the customer", max_length=500)


class OperatorCloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="closed by the operator", max_length=500)


class ClosingAccount(BaseModel):
    account: AccountView
    closureWorkflowId: str


class CreatedAccount(BaseModel):
    account: AccountView
    apiKey: dict[str, str] = Field(description="{id, token}: the token is shown only here, once")
    setupWorkflowId: str


class AccountList(BaseModel):
    accounts: list[AccountView]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _view(row: asyncpg.Record) -> dict[str, Any]:
    return AccountView(id=row["id"], name=row["name"], email=row["email"], plan=row["plan"], status=row["status"],
                       statusReason=row["status_reason"], stripeCustomerId=row["stripe_customer_id"],
                       createdAt=row["created_at"].isoformat(), closedAt=_iso(row["closed_at"]),
                       reopenableUntil=_iso(row["closure_grace_until"]) if row["status"] == "closing" else None
                       ).model_dump()


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
    if row["status"] in ("closing", "closed"):
        raise ApiError(409, f"account {row['id']} is {row['status']}: reopen it first")
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


@routes.get("/cloud/account")
@documented("The caller's account", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetAccountResponse"), tags=TAGS)
async def get_account(request: web.Request) -> web.Response:
    call = Call.of(request.app, await require_customer(request))  # GetAccount: api/cloud_service.py, as over gRPC
    return message_response(await cloud_service.get_account(call, GetAccountRequest()))


async def _close(request: web.Request, account_id: str, reason: str) -> web.Response:
    """Move the account to 'closing' and start the workflow that finishes the closure after the grace."""
    settings = request.app[SETTINGS]
    pool = request.app[POOL]
    try:
        row = await store.begin_account_closure(pool, account_id, grace_seconds=settings.account_closure_grace_seconds,
                                                reason=reason)
    except ClosureRefused as err:
        raise ApiError(409, str(err)) from err
    if row is None:
        raise ApiError(404, f"account {account_id} not found")
    workflow_id = account_closure_workflow_id(account_id)
    params = AccountClosureInput(account_id, settings.account_closure_grace_seconds,
                                 dunning=run_input(settings).dunning)
    try:
        await request.app[TEMPORAL].start_workflow(AccountClosureWorkflow.run, params, id=workflow_id,
                                                   task_queue=settings.task_queue)
    except Exception as err:
        await store.reopen_account(pool, account_id)  # nothing will finish this closure: take it back
        if isinstance(err, WorkflowAlreadyStartedError):  # an earlier closure, reopened, is still winding down
            raise ApiError(409, "the previous closure of this account is still ending: try again shortly") from err
        raise
    return web.json_response(ClosingAccount(account=AccountView(**_view(row)), closureWorkflowId=workflow_id)
                             .model_dump(), status=202)


async def _reopen(request: web.Request, account_id: str) -> web.Response:
    try:
        row = await store.reopen_account(request.app[POOL], account_id)
    except ClosureRefused as err:
        raise ApiError(409, str(err)) from err
    if row is None:
        raise ApiError(404, f"account {account_id} not found")
    try:  # Postgres has decided; this only ends the workflow's wait early (it re-checks Postgres at the end)
        await request.app[TEMPORAL].get_workflow_handle(account_closure_workflow_id(account_id)).signal(
            AccountClosureWorkflow.reopened, ReopenNotice("reopened through the API"))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    return web.json_response(_view(row))


@routes.post("/cloud/account/close")
@documented("Close the caller's account: nothing new can be created and usage is billed up to now; after the "
            "grace (reopen until then) its namespaces are deleted and a final invoice is made and collected",
            auth="customer", request=CloseRequest, response=ClosingAccount, status=202, tags=TAGS)
async def close_own_account(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    body = await parse(request, CloseRequest)
    if body.confirm != customer.account_id:
        raise ApiError(400, f"confirm must be this account's id ({customer.account_id}) to close it")
    return await _close(request, customer.account_id, body.reason)


@routes.post("/cloud/account/reopen")
@documented("Reopen the caller's closing account within its grace: everything is as before the closure",
            auth="customer", response=AccountView, tags=TAGS)
async def reopen_own_account(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    return await _reopen(request, customer.account_id)


@routes.post("/admin/accounts/{account_id}/close")
@documented("Close an account (as the customer can): reopenable within the grace, then namespaces deleted and a "
            "final invoice made", auth="operator", request=OperatorCloseRequest, response=ClosingAccount,
            status=202, tags=TAGS)
async def close_account(request: web.Request) -> web.Response:
    require_operator(request)
    body = await parse(request, OperatorCloseRequest) if request.can_read_body else OperatorCloseRequest()
    return await _close(request, request.match_info["account_id"], body.reason)


@routes.post("/admin/accounts/{account_id}/reopen")
@documented("Reopen a closing account within its grace", auth="operator", response=AccountView, tags=TAGS)
async def reopen_account(request: web.Request) -> web.Response:
    require_operator(request)
    return await _reopen(request, request.match_info["account_id"])
