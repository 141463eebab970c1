"""Routes: billing reports (Cloud Ops paths and JSON; the methods are in api/cloud_usage.py), and their download
through the signed URL a report gives."""

from __future__ import annotations

from aiohttp import web
from temporalio.api.cloud.cloudservice.v1 import CreateBillingReportRequest, GetBillingReportRequest

from api import cloud_usage
from api.appkeys import POOL, SETTINGS
from api.auth import require_customer
from api.cloud_json import message_response, parse_message, proto_schema
from api.cloud_service import Call
from api.errors import ApiError
from api.openapi import documented
from tcloud.store import billing_reports as report_store

routes = web.RouteTableDef()
TAGS = ("billing",)


@routes.post("/cloud/billing-reports")
@documented("Generate a billing report of a time range (CSV; the operation is fulfilled in the answer)",
            auth="customer", request=proto_schema("temporal.api.cloud.cloudservice.v1.CreateBillingReportRequest"),
            response=proto_schema("temporal.api.cloud.cloudservice.v1.CreateBillingReportResponse"), tags=TAGS)
async def create_billing_report(request: web.Request) -> web.Response:
    call = Call.of(request.app, await require_customer(request))
    body = await parse_message(request, CreateBillingReportRequest)
    return message_response(await cloud_usage.create_billing_report(call, body))


@routes.get("/cloud/billing-reports/{billing_report_id}")
@documented("A billing report, with a signed download URL", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetBillingReportResponse"), tags=TAGS)
async def get_billing_report(request: web.Request) -> web.Response:
    call = Call.of(request.app, await require_customer(request))
    return message_response(await cloud_usage.get_billing_report(
        call, GetBillingReportRequest(billing_report_id=request.match_info["billing_report_id"])))


@routes.get("/cloud/billing-reports/{billing_report_id}/download")
@documented("A billing report's CSV, through the URL its GetBillingReport gave (signed, until it expires)",
            auth="signature", query={"expires": "from the signed URL", "signature": "from the signed URL"},
            tags=TAGS)
async def download_billing_report(request: web.Request) -> web.Response:
    expires, signature = request.query.get("expires"), request.query.get("signature")
    if not expires or not signature:
        raise ApiError(400, "a download URL carries expires and signature: get the report for one")
    report_id = request.match_info["billing_report_id"]
    found = await report_store.report_download(request.app[POOL], report_id)
    # An unknown report is refused like a wrong signature: the URL tells nothing about what exists.
    account_id = found["account_id"] if found is not None else ""
    cloud_usage.check_download(request.app[SETTINGS], account_id, report_id, expires, signature)
    assert found is not None  # a valid signature names a report that exists
    return web.Response(text=found["content"], content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{report_id}.csv"'})
