"""Usage, billing reports and the region through Temporal's own ``CloudOperationsClient`` (and the JSON door),
against the real API process, Postgres (the ledger and its rollups) and worker."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import Parse
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.billing.v1 import BillingReport, BillingReportSpec
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateBillingReportRequest,
    CreateServiceAccountRequest,
    GetBillingReportRequest,
    GetBillingReportResponse,
    GetRegionRequest,
    GetRegionResponse,
    GetRegionsRequest,
    GetUsageRequest,
    GetUsageResponse,
)
from temporalio.api.cloud.identity.v1 import Access, AccountAccess, ApiKeySpec, OwnerType, ServiceAccountSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.usage.v1 import RecordType
from temporalio.client import CloudOperationsClient
from temporalio.service import RPCStatusCode

from api import cloud_usage
from tcloud.settings import Settings
from tcloud.store import usage as usage_store
from tests import cloud_support
from tests.accounts_fixtures import TestAccount, create_account, unique
from tests.cloud_support import cloud_client, finished, refused

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

DAY = timedelta(days=1)
FIRST = datetime(2025, 3, 1, tzinfo=UTC)  # the days this module writes usage on: 1 to 4 March 2025
ADMIN, DEVELOPER = AccountAccess.ROLE_ADMIN, AccountAccess.ROLE_DEVELOPER
FINANCE, READ = AccountAccess.ROLE_FINANCE_ADMIN, AccountAccess.ROLE_READ


def ts(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


account, ops = cloud_support.account_fixtures("usage")


@pytest_asyncio.fixture(scope="module")
async def ledger(pool: asyncpg.Pool, account: TestAccount, cloud_app: TestClient,
                 operator_headers: dict[str, str]) -> dict[str, str]:
    """Usage of two of the account's namespaces (and another account's) on 1 to 4 March 2025: hourly rows, as
    metering writes them; every hour of 1 and 2 March collected by both collectors, 3 and 4 March not.

    Returns:
        The namespaces: ``a`` and ``b`` (the account's), ``other`` (another account's).
    """
    other = await create_account(cloud_app, operator_headers, prefix="usageo")
    names = {"a": f"ua.{account.id}", "b": f"ub.{account.id}", "other": f"uo.{other.id}"}
    rows = []
    for hour_index in range(4 * 24):
        hour = FIRST + timedelta(hours=hour_index)
        day = hour_index // 24
        rows += [(names["a"], hour, "actions", Decimal(10 + day), account.id, True),
                 (names["a"], hour, "active_storage", Decimal(1000), account.id, True),
                 (names["other"], hour, "actions", Decimal(7), other.id, True)]
        if day == 1:  # b only used on 2 March
            rows.append((names["b"], hour, "retained_storage", Decimal("2.5"), account.id, True))
    await usage_store.copy_ledger_rows(pool, rows)
    await pool.executemany("INSERT INTO usage_collected_hours (collector, hour) VALUES ($1, $2)",
                           [(c, FIRST + timedelta(hours=h)) for c in ("actions", "storage") for h in range(48)])
    return names


async def key_with_role(ops: CloudOperationsClient, role: AccountAccess.Role.ValueType) -> str:
    """The token of an API key owned by a new service account with ``role``."""
    made = await ops.cloud_service.create_service_account(CreateServiceAccountRequest(
        spec=ServiceAccountSpec(name=unique("sa-"), access=Access(account_access=AccountAccess(role=role)))))
    key = await ops.cloud_service.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=made.service_account_id, owner_type=OwnerType.OWNER_TYPE_SERVICE_ACCOUNT, display_name="k")))
    return key.token


def records(response: GetUsageResponse) -> dict[tuple[str, str, int], float]:
    """(day, namespace, record type) -> value of every record of the answer."""
    out: dict[tuple[str, str, int], float] = {}
    for summary in response.summaries:
        day = summary.start_time.ToDatetime().date().isoformat()
        for group in summary.record_groups:
            for record in group.records:
                out[(day, group.group_bys[0].value, record.type)] = record.value
    return out


# --- Region ----------------------------------------------------------------------------------------------------


async def test_get_region_answers_the_one_region_and_not_found_for_others(
        ops: CloudOperationsClient, settings: Settings, cloud_app: TestClient, account: TestAccount) -> None:
    cloud = ops.cloud_service
    region = (await cloud.get_region(GetRegionRequest(region=settings.cloud_region))).region
    assert region == (await cloud.get_regions(GetRegionsRequest())).regions[0]
    for other in ("aws-us-east-1", "", settings.cloud_region.upper() + "x"):
        err = await refused(cloud.get_region(GetRegionRequest(region=other)))
        assert err.status == RPCStatusCode.NOT_FOUND, other
    resp = await cloud_app.get(f"/cloud/regions/{settings.cloud_region}", headers=account.headers)
    assert Parse(await resp.text(), GetRegionResponse()).region == region
    assert (await cloud_app.get("/cloud/regions/aws-us-east-1", headers=account.headers)).status == 404


# --- GetUsage --------------------------------------------------------------------------------------------------


async def test_get_usage_pages_days_per_namespace_in_clouds_units(
        ops: CloudOperationsClient, ledger: dict[str, str], cloud_app: TestClient, account: TestAccount) -> None:
    cloud = ops.cloud_service
    start, end = ts(FIRST), ts(FIRST + 4 * DAY)
    first = await cloud.get_usage(GetUsageRequest(start_time_inclusive=start, end_time_exclusive=end, page_size=3))
    assert [s.start_time.ToDatetime(tzinfo=UTC) for s in first.summaries] == [FIRST, FIRST + DAY, FIRST + 2 * DAY]
    assert first.next_page_token
    second = await cloud.get_usage(GetUsageRequest(start_time_inclusive=start, end_time_exclusive=end, page_size=3,
                                                   page_token=first.next_page_token))
    assert [s.start_time.ToDatetime(tzinfo=UTC) for s in second.summaries] == [FIRST + 3 * DAY]
    assert second.next_page_token == ""
    summaries = [*first.summaries, *second.summaries]
    assert [s.incomplete for s in summaries] == [False, False, True, True]

    got = records(GetUsageResponse(summaries=summaries))
    a, b = ledger["a"], ledger["b"]
    assert got == {
        **{(f"2025-03-0{d + 1}", a, RecordType.RECORD_TYPE_ACTIONS): 24.0 * (10 + d) for d in range(4)},
        **{(f"2025-03-0{d + 1}", a, RecordType.RECORD_TYPE_ACTIVE_STORAGE): 24 * 1000 * 3600.0 for d in range(4)},
        ("2025-03-02", b, RecordType.RECORD_TYPE_RETAINED_STORAGE): 24 * 2.5 * 3600,
    }, "one group per namespace and day, storage in byte-seconds, nothing of another account"
    assert all(s.record_groups[0].group_bys[0].key == 1 for s in summaries)  # GROUP_BY_KEY_NAMESPACE

    # The JSON door answers the same days identically.
    resp = await cloud_app.get("/cloud/usage", headers=account.headers, params={
        "startTimeInclusive": "2025-03-01", "endTimeExclusive": "2025-03-05"})
    assert resp.status == 200
    assert Parse(await resp.text(), GetUsageResponse(), ignore_unknown_fields=True) == GetUsageResponse(
        summaries=summaries)
    # ... and pages them alike (pageSize, pageToken), hours too.
    window = {"startTimeInclusive": "2025-03-01", "endTimeExclusive": "2025-03-05", "pageSize": "3"}
    for page, token in ((first, ""), (second, first.next_page_token)):
        resp = await cloud_app.get("/cloud/usage", headers=account.headers,
                                   params={**window, **({"pageToken": token} if token else {})})
        assert Parse(await resp.text(), GetUsageResponse(), ignore_unknown_fields=True) == page
    hours, token = [], ""
    while True:
        resp = await cloud_app.get("/cloud/usage", headers=account.headers, params={
            "granularity": "hour", "startTimeInclusive": "2025-03-01T00:00:00Z",
            "endTimeExclusive": "2025-03-01T05:00:00Z", "pageSize": "2", **({"pageToken": token} if token else {})})
        answer = Parse(await resp.text(), GetUsageResponse(), ignore_unknown_fields=True)
        hours.append([s.start_time.ToDatetime().hour for s in answer.summaries])
        token = answer.next_page_token
        if not token:
            break
    assert hours == [[0, 1], [2, 3], [4]]
    resp = await cloud_app.get("/cloud/usage", headers=account.headers, params={**window, "pageToken": "2025-04-01"})
    assert resp.status == 400


async def test_get_usage_validates_its_window_and_page(ops: CloudOperationsClient, ledger: dict[str, str]) -> None:
    cloud = ops.cloud_service
    bad = [
        GetUsageRequest(start_time_inclusive=ts(FIRST + timedelta(hours=1))),
        GetUsageRequest(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST)),
        GetUsageRequest(start_time_inclusive=ts(FIRST + DAY), end_time_exclusive=ts(FIRST)),
        GetUsageRequest(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY), page_size=1001),
        GetUsageRequest(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY), page_token="nope"),
        GetUsageRequest(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY), page_token="2025-04-01"),
    ]
    for request in bad:
        err = await refused(cloud.get_usage(request))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, request
    # No window: this month so far, one summary per day up to today.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    default = await cloud.get_usage(GetUsageRequest())
    assert default.summaries[0].start_time.ToDatetime(tzinfo=UTC) == today.replace(day=1)
    assert default.summaries[-1].end_time.ToDatetime(tzinfo=UTC) == today + DAY


async def test_usage_and_reports_are_for_admins_and_finance_admins(ops: CloudOperationsClient, target: str,
                                                                   ledger: dict[str, str]) -> None:
    window = GetUsageRequest(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY))
    report = CreateBillingReportRequest(spec=BillingReportSpec(
        start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY)))
    finance = (await cloud_client(target, await key_with_role(ops, FINANCE))).cloud_service
    assert len((await finance.get_usage(window)).summaries) == 1
    made = await finance.create_billing_report(report)
    assert (await finance.get_billing_report(GetBillingReportRequest(billing_report_id=made.billing_report_id))
            ).billing_report.state == BillingReport.BILLING_REPORT_STATE_GENERATED
    for role in (DEVELOPER, READ):
        cloud = (await cloud_client(target, await key_with_role(ops, role))).cloud_service
        for call in (cloud.get_usage(window), cloud.create_billing_report(report),
                     cloud.get_billing_report(GetBillingReportRequest(billing_report_id=made.billing_report_id))):
            err = await refused(call)
            assert err.status == RPCStatusCode.PERMISSION_DENIED, (role, err)


# --- Billing reports -------------------------------------------------------------------------------------------


async def test_a_billing_report_is_generated_and_downloaded_through_its_signed_url(
        ops: CloudOperationsClient, ledger: dict[str, str], cloud_app: TestClient, settings: Settings,
        account: TestAccount, target: str, operator_headers: dict[str, str]) -> None:
    cloud = ops.cloud_service
    request = CreateBillingReportRequest(async_operation_id=unique("report-"), spec=BillingReportSpec(
        start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + 4 * DAY), description="March, first days",
        granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY,
        download_url_expiration_duration=Duration(seconds=600)))
    made = await cloud.create_billing_report(request)
    assert made.async_operation.state == AsyncOperation.STATE_FULFILLED
    assert (await finished(ops, made.async_operation.id)).state == AsyncOperation.STATE_FULFILLED
    again = await cloud.create_billing_report(request)  # the same request again: the same report
    assert again.billing_report_id == made.billing_report_id

    report = (await cloud.get_billing_report(GetBillingReportRequest(billing_report_id=made.billing_report_id))
              ).billing_report
    assert (report.id, report.state, report.spec.description) == (
        made.billing_report_id, BillingReport.BILLING_REPORT_STATE_GENERATED, "March, first days")
    assert report.async_operation_id == request.async_operation_id
    [download] = report.download_info
    assert download.file_format == BillingReport.Download.FILE_FORMAT_CSV
    expires = download.url_expiration_time.ToDatetime(tzinfo=UTC)
    assert timedelta(seconds=590) < expires - datetime.now(UTC) <= timedelta(seconds=600)
    url = urlsplit(download.url)
    assert download.url.startswith(settings.oidc_issuer.rstrip("/") + "/cloud/billing-reports/")

    resp = await cloud_app.get(f"{url.path}?{url.query}")  # no API key: the signature is the credential
    assert resp.status == 200 and resp.content_type == "text/csv"
    body = await resp.read()
    assert len(body) == download.file_size_bytes
    lines = list(csv.DictReader(io.StringIO(body.decode())))
    a, b = ledger["a"], ledger["b"]
    assert {(r["start_time"][:10], r["namespace"], r["usage_type"]): (r["unit"], Decimal(r["quantity"]))
            for r in lines} == {
        **{(f"2025-03-0{d + 1}", a, "actions"): ("count", Decimal(24 * (10 + d))) for d in range(4)},
        **{(f"2025-03-0{d + 1}", a, "active_storage"): ("byte_seconds", Decimal(24 * 1000 * 3600)) for d in range(4)},
        ("2025-03-02", b, "retained_storage"): ("byte_seconds", Decimal(24 * 2.5 * 3600)),
    }
    assert all(r["billable"] == "true" and r["end_time"] > r["start_time"] for r in lines)

    # The JSON door reads the same report; a tampered, expired or foreign URL downloads nothing.
    resp = await cloud_app.get(f"/cloud/billing-reports/{made.billing_report_id}", headers=account.headers)
    over_http = Parse(await resp.text(), GetBillingReportResponse()).billing_report
    assert (over_http.id, over_http.state) == (report.id, report.state)
    signature = url.query.split("signature=")[1]
    forged = url.query.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert (await cloud_app.get(f"{url.path}?{forged}")).status == 403
    stale = urlsplit(cloud_usage.download_url(settings, account.id, made.billing_report_id, 1_000_000_000))
    assert (await cloud_app.get(f"{stale.path}?{stale.query}")).status == 403
    assert (await cloud_app.get(url.path)).status == 400
    other = await create_account(cloud_app, operator_headers, prefix="usagex")
    theirs = (await cloud_client(target, other.token)).cloud_service
    err = await refused(theirs.get_billing_report(GetBillingReportRequest(billing_report_id=made.billing_report_id)))
    assert err.status == RPCStatusCode.NOT_FOUND
    borrowed = urlsplit(cloud_usage.download_url(settings, other.id, made.billing_report_id, 2_000_000_000))
    assert (await cloud_app.get(f"{borrowed.path}?{borrowed.query}")).status == 403


async def test_hourly_and_monthly_reports_and_their_checks(ops: CloudOperationsClient, ledger: dict[str, str],
                                                          cloud_app: TestClient) -> None:
    cloud = ops.cloud_service
    hourly = await cloud.create_billing_report(CreateBillingReportRequest(spec=BillingReportSpec(
        start_time_inclusive=ts(FIRST + timedelta(hours=2)), end_time_exclusive=ts(FIRST + timedelta(hours=4)),
        granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_HOURLY)))
    monthly = await cloud.create_billing_report(CreateBillingReportRequest(spec=BillingReportSpec(
        start_time_inclusive=ts(FIRST), end_time_exclusive=ts(datetime(2025, 4, 1, tzinfo=UTC)),
        granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_MONTHLY)))
    texts = []
    for made in (hourly, monthly):
        report = (await cloud.get_billing_report(GetBillingReportRequest(billing_report_id=made.billing_report_id))
                  ).billing_report
        url = urlsplit(report.download_info[0].url)
        texts.append(list(csv.DictReader(io.StringIO(await (await cloud_app.get(f"{url.path}?{url.query}")).text()))))
    hours = {(r["start_time"], r["usage_type"]) for r in texts[0] if r["namespace"] == ledger["a"]}
    assert hours == {(f"2025-03-01T0{h}:00:00Z", kind) for h in (2, 3) for kind in ("actions", "active_storage")}
    month = {(r["namespace"], r["usage_type"]): Decimal(r["quantity"]) for r in texts[1]}
    assert month[(ledger["a"], "actions")] == 24 * (10 + 11 + 12 + 13)
    assert all(r["start_time"] == "2025-03-01T00:00:00Z" and r["end_time"] == "2025-04-01T00:00:00Z"
               for r in texts[1])

    bad = [
        BillingReportSpec(start_time_inclusive=ts(FIRST)),  # no end
        BillingReportSpec(start_time_inclusive=ts(FIRST + timedelta(hours=1)), end_time_exclusive=ts(FIRST + DAY)),
        BillingReportSpec(start_time_inclusive=ts(FIRST + DAY), end_time_exclusive=ts(FIRST + DAY),
                          granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY),
        BillingReportSpec(start_time_inclusive=ts(FIRST + DAY), end_time_exclusive=ts(FIRST + 2 * DAY),
                          granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_MONTHLY),
        BillingReportSpec(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + 40 * DAY),
                          granularity=BillingReportSpec.BILLING_REPORT_GRANULARITY_HOURLY),
        BillingReportSpec(start_time_inclusive=ts(FIRST), end_time_exclusive=ts(FIRST + DAY),
                          download_url_expiration_duration=Duration(seconds=30 * 86400)),
        BillingReportSpec(start_time_inclusive=Timestamp(seconds=ts(FIRST).seconds, nanos=500),
                          end_time_exclusive=ts(FIRST + DAY)),
    ]
    for spec in bad:
        err = await refused(cloud.create_billing_report(CreateBillingReportRequest(spec=spec)))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, spec
    err = await refused(cloud.get_billing_report(GetBillingReportRequest(billing_report_id="br-nosuch")))
    assert err.status == RPCStatusCode.NOT_FOUND
