"""Routes: billing. Customers read their invoices and the month-to-date estimate (spend alerts:
``api/routes/spend_alerts.py``); operators start and inspect billing runs and list invoices by status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import require_billing, require_operator
from api.billing_models import (
    InvoiceList,
    InvoiceOut,
    RunOut,
    StartRun,
    UpcomingOut,
    invoice_out,
    upcoming_out,
)
from api.bodies import parse
from api.errors import ApiError
from api.openapi import documented
from tcloud.domain.billing_period import parse_period, period_bounds, period_of
from tcloud.domain.metering import COLLECTORS
from tcloud.domain.pricing import price_books
from tcloud.services.invoicing import price_account_month
from tcloud.store import billing_runs as runs_store
from tcloud.store import invoices as store
from workers.cap_billing import run_input
from workflows.billing import BillingRunStatus, BillingRunWorkflow, billing_run_id

routes = web.RouteTableDef()
TAGS = ("billing",)
STATUSES = ("draft", "zero", "open", "paid", "past_due", "written_off")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "limit must be an integer from 1 to 1000")
    return int(raw)


def _status_filter(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
    return status


def _period_filter(request: web.Request) -> str | None:
    period = request.query.get("period")
    if period is not None:
        try:
            parse_period(period)
        except ValueError as err:
            raise ApiError(400, str(err)) from err
    return period


@routes.get("/cloud/billing/invoices")
@documented("The account's invoices, newest first", auth="customer", response=InvoiceList, tags=TAGS,
            query={"status": "only invoices in this status", "limit": "at most this many (1-1000, default 100)"})
async def list_invoices(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    rows = await store.account_invoices(request.app[POOL], customer.account_id, status=_status_filter(request),
                                        limit=_limit(request))
    return web.json_response(InvoiceList(invoices=[invoice_out(r) for r in rows]).model_dump(mode="json"))


@routes.get("/cloud/billing/invoices/{invoice_id}")
@documented("One invoice with its lines, totals and the Stripe hosted link", auth="customer", response=InvoiceOut,
            tags=TAGS)
async def get_invoice(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    pool = request.app[POOL]
    row = await store.account_invoice(pool, request.match_info["invoice_id"], customer.account_id)
    if row is None:
        raise ApiError(404, "no such invoice")
    return web.json_response(invoice_out(row, await store.invoice_lines(pool, row["id"])).model_dump(mode="json"))


@routes.get("/cloud/billing/upcoming")
@documented("The month-to-date estimate, priced by the same code as the real invoice", auth="customer",
            response=UpcomingOut, tags=TAGS)
async def upcoming(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    now = datetime.now(UTC)
    month = await price_account_month(request.app[POOL], customer.account_id, period_of(now), until=now)
    return web.json_response(upcoming_out(month).model_dump(mode="json"))


# How long the workflow's live view (the server's description, then a query answered by the worker) may take
# before the answer goes with what the run last wrote to Postgres.
LIVE_VIEW_SECONDS = 0.5

_SERVER_STATUS = {WorkflowExecutionStatus.RUNNING: "running", WorkflowExecutionStatus.COMPLETED: "completed",
                  WorkflowExecutionStatus.CANCELED: "cancelled", WorkflowExecutionStatus.FAILED: "failed",
                  WorkflowExecutionStatus.TERMINATED: "terminated", WorkflowExecutionStatus.TIMED_OUT: "timed_out"}


def _run_handle(request: web.Request, period: str) -> WorkflowHandle[BillingRunWorkflow, BillingRunStatus]:
    return request.app[TEMPORAL].get_workflow_handle(billing_run_id(period), result_type=BillingRunStatus)


async def _server_status(handle: WorkflowHandle[BillingRunWorkflow, BillingRunStatus]) -> str | None:
    """The run's status on the Temporal server ('absent' when it has no such workflow), None when the server
    does not answer within the live view's time."""
    try:
        desc = await handle.describe(rpc_timeout=timedelta(seconds=LIVE_VIEW_SECONDS))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "absent"
        return None
    return _SERVER_STATUS.get(desc.status, "unknown") if desc.status else None


async def _run_out(request: web.Request, period: str) -> RunOut:
    """The run as recorded in ``billing_runs``, overlaid with the workflow's live view when it answers in time.

    Raises:
        ApiError: 404 when the period has no run.
    """
    pool = request.app[POOL]
    handle = _run_handle(request, period)
    recorded = await runs_store.billing_run(pool, period)
    server = await _server_status(handle)
    if recorded is None and server in ("absent", None):
        raise ApiError(404, f"no billing run for {period}")
    out = RunOut(period=period, workflow_id=handle.id, status=recorded.status if recorded else "running",
                 invoices_by_status=await store.invoice_counts_by_status(pool, period), live=False)
    if recorded is not None:
        out.phase, out.missing_hours, out.counts = recorded.phase, recorded.missing_hours, recorded.counts
        out.updated_at = recorded.updated_at
    if server not in (None, "absent"):
        out.status = server  # e.g. terminated, which the run could not write itself
    if server == "running":
        try:  # answered by the worker: without one, the answer comes from Postgres instead of hanging
            state = await handle.query(BillingRunWorkflow.status, rpc_timeout=timedelta(seconds=LIVE_VIEW_SECONDS))
        except (RPCError, WorkflowQueryFailedError):
            return out
        out.phase, out.missing_hours, out.in_flight, out.counts = (state.phase, state.missing_hours,
                                                                  state.in_flight, state.counts)
        out.live = True
    return out


@routes.post("/admin/billing/runs")
@documented("Start the billing run of a month that has ended (409 if it runs, or ran and rerun is not set)",
            auth="operator",
            request=StartRun, response=RunOut, status=202, tags=TAGS)
async def start_run(request: web.Request) -> web.Response:
    require_operator(request)
    body = await parse(request, StartRun)
    try:
        ends = period_bounds(body.period)[1]
    except ValueError as err:  # 0000-01, 9999-12: months whose bounds are no datetime
        raise ApiError(400, f"period {body.period} is out of range") from err
    if ends > datetime.now(UTC):
        raise ApiError(400, f"period {body.period} has not ended yet")
    await _refuse_unmetered(request, body.period)
    settings = request.app[SETTINGS]
    await runs_store.start_billing_run(request.app[POOL], body.period, billing_run_id(body.period))
    await request.app[TEMPORAL].start_workflow(
        BillingRunWorkflow.run, run_input(settings, body.period), id=billing_run_id(body.period),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE if body.rerun else WorkflowIDReusePolicy.REJECT_DUPLICATE)
    return web.json_response((await _run_out(request, body.period)).model_dump(mode="json"), status=202)


async def _refuse_unmetered(request: web.Request, period: str) -> None:
    """400 for a month the platform never metered (it ended before metering began) or no price book covers."""
    began = await store.metering_began(request.app[POOL], list(COLLECTORS))
    if len(began) < len(COLLECTORS):
        raise ApiError(400, "usage has not been collected yet: there is nothing to bill")
    start, end = period_bounds(period)
    first = min(began.values())
    if end <= first:
        raise ApiError(400, f"period {period} ended before metering began ({first.isoformat()}): "
                            f"the first billable period is {period_of(first)}")
    if start.date() < price_books()[0].effective_from.replace(day=1):
        raise ApiError(400, f"period {period} is before the first price book ({price_books()[0].version})")


@routes.post("/admin/billing/runs/{period}/cancel")
@documented("Cancel a running billing run: invoices already started finish (each account is invoiced fully once "
            "or not at all); accounts not reached are left for a rerun", auth="operator", response=RunOut,
            status=202, tags=TAGS)
async def cancel_run(request: web.Request) -> web.Response:
    require_operator(request)
    period = _path_period(request)
    handle = _run_handle(request, period)
    server = await _server_status(handle)
    if server == "absent":
        raise ApiError(404, f"no billing run for {period}")
    if server is None:
        raise ApiError(503, "the Temporal server did not answer: try again")
    if server != "running":
        raise ApiError(409, f"the billing run for {period} is {server}")
    await handle.cancel()
    return web.json_response((await _run_out(request, period)).model_dump(mode="json"), status=202)


def _path_period(request: web.Request) -> str:
    period = request.match_info["period"]
    try:
        parse_period(period)
    except ValueError as err:
        raise ApiError(400, str(err)) from err
    return period


@routes.get("/admin/billing/runs/{period}")
@documented("A billing run: its workflow status and phase, and the period's invoices by status", auth="operator",
            response=RunOut, tags=TAGS)
async def get_run(request: web.Request) -> web.Response:
    require_operator(request)
    return web.json_response((await _run_out(request, _path_period(request))).model_dump(mode="json"))


@routes.get("/admin/billing/invoices")
@documented("Invoices of every account, by status and period", auth="operator", response=InvoiceList, tags=TAGS,
            query={"status": "only invoices in this status", "period": "only this month (YYYY-MM)",
                   "limit": "at most this many (1-1000, default 100)"})
async def admin_invoices(request: web.Request) -> web.Response:
    require_operator(request)
    rows = await store.all_invoices(request.app[POOL], status=_status_filter(request),
                                    period=_period_filter(request), limit=_limit(request))
    invoices = [invoice_out(r, for_operator=True) for r in rows]
    return web.json_response(InvoiceList(invoices=invoices).model_dump(mode="json"))


