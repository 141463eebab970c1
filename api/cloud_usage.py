"""The Cloud Ops API's usage and billing-report methods (``GetUsage``, ``CreateBillingReport``, ``GetBillingReport``).

Functions of a :class:`api.cloud_service.Call` and the request message, like those of ``api/cloud_service.py``: the
gRPC server (``api/cloud_grpc.METHODS``) and the JSON routes (``api/routes/billing_reports.py``) call them. Usage
is read from the ledger's rollups through ``tcloud.store.usage``; a report is summed and written as CSV by Postgres
(``tcloud.store.billing_reports``) in the request, so its operation is fulfilled when the answer comes, and it is
downloaded through a URL signed by the API (:func:`download_url`, checked by :func:`check_download`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.billing.v1 import BillingReport, BillingReportSpec
from temporalio.api.cloud.cloudservice.v1 import (
    CreateBillingReportRequest,
    CreateBillingReportResponse,
    GetBillingReportRequest,
    GetBillingReportResponse,
    GetUsageRequest,
    GetUsageResponse,
)
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.cloud.usage.v1 import Summary

from api import operations, usage_summaries
from api.cloud_service import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, Call
from api.errors import ApiError
from api.jwt import signing_key
from tcloud.domain.metering import COLLECTORS, HOUR
from tcloud.settings import Settings
from tcloud.store import billing_reports as report_store
from tcloud.store import usage as usage_store
from tcloud.store.operations import OperationIdTaken, find_account_operation

DAY = timedelta(days=1)

# --- GetUsage ---------------------------------------------------------------------------------------------------


def _instant(ts: Timestamp, field: str) -> datetime:
    """A request's timestamp, which must be a UTC midnight (Cloud's GetUsage counts whole days)."""
    if ts.nanos or ts.seconds % 86400:
        raise ApiError(400, f"{field} must be a UTC midnight (a whole day)")
    return datetime.fromtimestamp(ts.seconds, UTC)


async def get_usage(call: Call, request: GetUsageRequest) -> GetUsageResponse:
    """The account's usage per UTC day and namespace, a page of days at a time (``page_size`` days; the token is
    the next page's first day).

    The range defaults to the 1st of this month up to the end of today. A day is ``incomplete`` until every
    collector has each of its hours. Admins and finance admins only (``billing.read``).
    """
    call.customer.require("billing.read")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (_instant(request.start_time_inclusive, "startTimeInclusive")
             if request.HasField("start_time_inclusive") else today.replace(day=1))
    end = (_instant(request.end_time_exclusive, "endTimeExclusive")
           if request.HasField("end_time_exclusive") else today + DAY)
    if start >= end:
        raise ApiError(400, "startTimeInclusive must be before endTimeExclusive")
    size = request.page_size or PAGE_SIZE_DEFAULT
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    try:
        days, next_page_token = usage_summaries.page(start, end, DAY, size, request.page_token)
    except ValueError as err:
        raise ApiError(400, str(err)) from err
    async with call.pool.acquire() as conn:
        rows = await usage_store.account_daily_quantities(conn, call.customer.account_id, [d.date() for d in days])
        counts = await usage_store.collected_counts(conn, COLLECTORS, days[0], days[-1] + DAY, "day")
    quantities: dict[date, dict[str, dict[str, object]]] = {d.date(): {} for d in days}
    for r in rows:
        quantities[r["day"]].setdefault(r["namespace"], {})[r["metric"]] = r["quantity"]
    complete = len(COLLECTORS) * (DAY // HOUR)
    answer = GetUsageResponse()
    for day in days:
        summary = Summary(record_groups=usage_summaries.record_groups(quantities[day.date()]),  # type: ignore[arg-type]
                          incomplete=counts.get(day, 0) < complete)
        summary.start_time.FromDatetime(day)
        summary.end_time.FromDatetime(day + DAY)
        answer.summaries.append(summary)
    answer.next_page_token = next_page_token
    return answer


# --- Billing reports --------------------------------------------------------------------------------------------

_GRANULARITY = {
    BillingReportSpec.BILLING_REPORT_GRANULARITY_UNSPECIFIED: "daily",
    BillingReportSpec.BILLING_REPORT_GRANULARITY_HOURLY: "hourly",
    BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY: "daily",
    BillingReportSpec.BILLING_REPORT_GRANULARITY_MONTHLY: "monthly",
}
_GRANULARITY_ENUM = {"hourly": BillingReportSpec.BILLING_REPORT_GRANULARITY_HOURLY,
                     "daily": BillingReportSpec.BILLING_REPORT_GRANULARITY_DAILY,
                     "monthly": BillingReportSpec.BILLING_REPORT_GRANULARITY_MONTHLY}
# How many periods one report may hold: a month of hours, a year and a day of days, three years of months.
MAX_PERIODS = {"hourly": 31 * 24, "daily": 366, "monthly": 36}
URL_TTL_DEFAULT, URL_TTL_MIN, URL_TTL_MAX = 3600, 60, 7 * 86400
_STATE = {"in_progress": BillingReport.BILLING_REPORT_STATE_IN_PROGRESS,
          "generated": BillingReport.BILLING_REPORT_STATE_GENERATED,
          "failed": BillingReport.BILLING_REPORT_STATE_FAILED}


def _aligned(moment: datetime, granularity: str, field: str) -> None:
    whole_hour = moment.minute == moment.second == moment.microsecond == 0
    if granularity == "hourly" and not whole_hour:
        raise ApiError(400, f"spec.{field} must be a whole UTC hour for an hourly report")
    if granularity == "daily" and not (whole_hour and moment.hour == 0):
        raise ApiError(400, f"spec.{field} must be a UTC midnight for a daily report")
    if granularity == "monthly" and not (whole_hour and moment.hour == 0 and moment.day == 1):
        raise ApiError(400, f"spec.{field} must be the 1st of a month (UTC midnight) for a monthly report")


def _periods(start: datetime, end: datetime, granularity: str) -> int:
    if granularity == "monthly":
        return (end.year - start.year) * 12 + end.month - start.month
    return int((end - start) / (HOUR if granularity == "hourly" else DAY))


def _checked_report_spec(spec: BillingReportSpec) -> tuple[datetime, datetime, str, int]:
    """The range, granularity and download URL lifetime of a requested report, or a 400 saying what is wrong."""
    if not spec.HasField("start_time_inclusive") or not spec.HasField("end_time_exclusive"):
        raise ApiError(400, "spec.startTimeInclusive and spec.endTimeExclusive are required")
    if spec.granularity not in _GRANULARITY:
        raise ApiError(400, "spec.granularity must be HOURLY, DAILY or MONTHLY")
    granularity = _GRANULARITY[spec.granularity]
    if spec.start_time_inclusive.nanos or spec.end_time_exclusive.nanos:
        raise ApiError(400, "spec.startTimeInclusive and spec.endTimeExclusive must be whole seconds")
    start = spec.start_time_inclusive.ToDatetime(tzinfo=UTC)
    end = spec.end_time_exclusive.ToDatetime(tzinfo=UTC)
    _aligned(start, granularity, "startTimeInclusive")
    _aligned(end, granularity, "endTimeExclusive")
    if start >= end:
        raise ApiError(400, "spec.startTimeInclusive must be before spec.endTimeExclusive")
    if _periods(start, end, granularity) > MAX_PERIODS[granularity]:
        raise ApiError(400, f"a {granularity} report covers at most {MAX_PERIODS[granularity]} periods")
    ttl = URL_TTL_DEFAULT
    if spec.HasField("download_url_expiration_duration"):
        ttl = spec.download_url_expiration_duration.seconds
        if not URL_TTL_MIN <= ttl <= URL_TTL_MAX or spec.download_url_expiration_duration.nanos:
            raise ApiError(400, f"spec.downloadUrlExpirationDuration must be whole seconds from {URL_TTL_MIN} s "
                                f"to {URL_TTL_MAX // 86400} days")
    if len(spec.description) > 1000:
        raise ApiError(400, "spec.description is limited to 1000 characters")
    return start, end, granularity, ttl


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _fulfilled(row: asyncpg.Record) -> AsyncOperation:
    op = AsyncOperation(id=row["id"], operation_type=row["operation_type"], state=AsyncOperation.STATE_FULFILLED,
                        state_deprecated="fulfilled")
    op.started_time.CopyFrom(_ts(row["created_at"]))
    op.finished_time.CopyFrom(_ts(row["fulfilled_at"] or row["created_at"]))
    return op


async def _earlier_report(call: Call, requested_id: str) -> CreateBillingReportResponse | None:
    """The answer to a retry of a CreateBillingReport with this ``async_operation_id`` (its report), or None."""
    if not requested_id:
        return None
    row = await find_account_operation(call.pool, requested_id, call.customer.account_id)
    if row is None:
        return None
    if row["operation_type"] != "CreateBillingReport":
        raise operations.id_taken(OperationIdTaken(requested_id))
    return CreateBillingReportResponse(billing_report_id=row["resource"], async_operation=_fulfilled(row))


async def create_billing_report(call: Call, request: CreateBillingReportRequest) -> CreateBillingReportResponse:
    """Generate the account's billing report of a time range (its usage per period, namespace and usage type).

    The report is generated in this request: its operation is fulfilled in the answer. Admins and finance admins
    only (``billing.read``); an ``async_operation_id`` sent again answers with the report it made.
    """
    customer = call.customer
    customer.require("billing.read")
    start, end, granularity, ttl = _checked_report_spec(request.spec)
    op_id = operations.new_operation_id(request.async_operation_id)
    earlier = await _earlier_report(call, request.async_operation_id)
    if earlier is not None:
        return earlier
    report_id = f"br-{uuid.uuid4().hex}"
    try:
        await report_store.create_report(
            call.pool, report_id=report_id, account_id=customer.account_id, start=start, end=end,
            granularity=granularity, description=request.spec.description,  # type: ignore[arg-type]
            url_ttl_seconds=ttl, operation_id=op_id)
    except OperationIdTaken as err:  # the same request, sent twice at once: the other one's report
        again = await _earlier_report(call, err.operation_id)
        if again is None:
            raise operations.id_taken(err) from err
        return again
    operation = AsyncOperation(id=op_id, operation_type="CreateBillingReport", state=AsyncOperation.STATE_FULFILLED,
                               state_deprecated="fulfilled")
    return CreateBillingReportResponse(billing_report_id=report_id, async_operation=operation)


def _signature(settings: Settings, account_id: str, report_id: str, expires: int) -> str:
    """HMAC-SHA256 of the download's terms under a key derived from the platform's signing key (every API process
    has it; a rotated key ends the URLs signed with the old one)."""
    der = signing_key(settings).private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = hashlib.sha256(b"tcloud billing report download\0" + der).digest()
    return hmac.new(key, f"{account_id}\n{report_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def download_url(settings: Settings, account_id: str, report_id: str, expires: int) -> str:
    """The signed URL that downloads the report's CSV until ``expires`` (seconds since the epoch)."""
    base = settings.oidc_issuer.rstrip("/")  # the API's public URL
    signature = _signature(settings, account_id, report_id, expires)
    return f"{base}/cloud/billing-reports/{report_id}/download?expires={expires}&signature={signature}"


def check_download(settings: Settings, account_id: str, report_id: str, expires: str, signature: str,
                   now: float | None = None) -> None:
    """Refuse (403) a download whose signature is not the API's or whose time is up."""
    try:
        until = int(expires)
    except ValueError as err:
        raise ApiError(400, "expires must be an integer") from err
    wanted = _signature(settings, account_id, report_id, until)
    if not hmac.compare_digest(wanted, signature):
        raise ApiError(403, "the download URL's signature is not valid")
    if (time.time() if now is None else now) >= until:
        raise ApiError(403, "the download URL has expired: get the report again for a new one")


def report_message(row: asyncpg.Record, settings: Settings, now: float | None = None) -> BillingReport:
    """The Cloud Ops view of a ``billing_reports`` row, with a fresh signed download URL when it is generated."""
    spec = BillingReportSpec(description=row["description"], granularity=_GRANULARITY_ENUM[row["granularity"]])
    spec.start_time_inclusive.CopyFrom(_ts(row["start_time"]))
    spec.end_time_exclusive.CopyFrom(_ts(row["end_time"]))
    spec.download_url_expiration_duration.FromSeconds(row["url_ttl_seconds"])
    report = BillingReport(id=row["id"], state=_STATE[row["state"]], spec=spec,
                           async_operation_id=row["async_operation_id"])
    report.requested_time.CopyFrom(_ts(row["requested_at"]))
    if row["state"] == "generated":
        report.generated_time.CopyFrom(_ts(row["generated_at"]))
        expires = int(time.time() if now is None else now) + row["url_ttl_seconds"]
        download = BillingReport.Download(url=download_url(settings, row["account_id"], row["id"], expires),
                                          file_format=BillingReport.Download.FILE_FORMAT_CSV,
                                          file_size_bytes=row["size"] or 0)
        download.url_expiration_time.FromSeconds(expires)
        report.download_info.append(download)
    return report


async def get_billing_report(call: Call, request: GetBillingReportRequest) -> GetBillingReportResponse:
    """One of the account's billing reports, with a download URL valid for the report's requested duration."""
    call.customer.require("billing.read")
    row = await report_store.find_report(call.pool, call.customer.account_id, request.billing_report_id)
    if row is None:
        raise ApiError(404, f"billing report {request.billing_report_id} not found")
    return GetBillingReportResponse(billing_report=report_message(row, call.settings))
