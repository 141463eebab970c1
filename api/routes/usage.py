"""Routes: usage, in the shape of Cloud Ops ``GetUsage`` (daily summaries, or hourly), with a live estimate."""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web
from temporalio.api.cloud.usage.v1 import Summary

from activities import usage_sources
from api import usage_summaries
from api.appkeys import POOL, SETTINGS
from api.auth import require_billing
from api.cloud_json import proto_schema
from api.errors import ApiError
from api.openapi import documented
from tcloud.domain import metering
from tcloud.domain.metering import COLLECTORS, HOUR, floor_hour
from tcloud.platform.clients import prometheus_client
from tcloud.store import usage as usage_store

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

MAX_SUMMARIES = {"day": 93, "hour": 31 * 24}
QUERY = {
    "startTimeInclusive": "RFC 3339 time or date, on a day (hour) boundary; default: the 1st of this month",
    "endTimeExclusive": "RFC 3339 time or date, on a day (hour) boundary; default: the end of today (this hour)",
    "granularity": "'day' (default, as Cloud's GetUsage) or 'hour'",
    "estimate": "'true' adds this hour's actions so far, read live from Prometheus (an estimate)",
    "pageSize": "summaries per page (at most 93 days or 744 hours); without it the whole range, within those limits",
    "pageToken": "nextPageToken of the previous page",
}


def _instant(request: web.Request, name: str, default: datetime, step: timedelta) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as err:
        raise ApiError(400, f"{name} must be an RFC 3339 time or a date, got {raw!r}") from err
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if (value - datetime(2000, 1, 1, tzinfo=UTC)) % step:
        raise ApiError(400, f"{name} must fall on a {'day' if step == timedelta(days=1) else 'hour'} boundary (UTC)")
    return value


def _window(request: web.Request) -> tuple[datetime, datetime, str, int | None]:
    unknown = set(request.query) - set(QUERY)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    granularity = request.query.get("granularity", "day")
    if granularity not in usage_summaries.STEPS:
        raise ApiError(400, "granularity must be 'day' or 'hour'")
    step = usage_summaries.STEPS[granularity]
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = _instant(request, "startTimeInclusive", today.replace(day=1), step)
    end = _instant(request, "endTimeExclusive", today + step if granularity == "day" else floor_hour(now) + step,
                   step)
    if start >= end:
        raise ApiError(400, "startTimeInclusive must be before endTimeExclusive")
    size: int | None = None
    if "pageSize" in request.query:
        try:
            size = int(request.query["pageSize"])
        except ValueError as err:
            raise ApiError(400, "pageSize must be an integer") from err
        if not 1 <= size <= MAX_SUMMARIES[granularity]:
            raise ApiError(400, f"pageSize must be between 1 and {MAX_SUMMARIES[granularity]} for {granularity}s")
    elif (end - start) / step > MAX_SUMMARIES[granularity]:
        raise ApiError(400, f"at most {MAX_SUMMARIES[granularity]} {granularity}s per request (or pageSize)")
    return start, end, granularity, size


async def _estimate(request: web.Request, account_id: str) -> dict[str, Any]:
    """This hour's actions so far for the caller's namespaces, straight from Prometheus: not final."""
    settings = request.app[SETTINGS]
    now = datetime.now(UTC)
    hour = floor_hour(now)
    namespaces = await usage_store.account_namespaces_between(request.app[POOL], account_id, hour, now)
    body: dict[str, Any] = {"isEstimate": True, "startTime": hour.isoformat(), "endTime": now.isoformat()}
    try:
        labels = metering.namespace_label_map(namespaces)
        window = await asyncio.to_thread(
            usage_sources.action_window, prometheus_client(settings), hour, now,
            namespace_label=settings.prometheus_namespace_label, baseline_lookback=settings.usage_baseline_lookback)
    except Exception as err:  # an estimate never fails the request; say why it is missing
        log.warning("usage estimate unavailable: %s", err)
        body["error"] = "the live estimate is unavailable right now"
        return body
    quantities = {ns: {"actions": Decimal(sum(window.counts.get(label, {}).values()))}
                  for label, ns in labels.items()}
    summary = Summary(record_groups=usage_summaries.record_groups(quantities))
    body["recordGroups"] = usage_summaries.to_json([summary])["summaries"][0]["recordGroups"]
    return body


@routes.get("/cloud/usage")
@documented("Your usage per UTC day (or hour) per namespace, in the shape of Cloud Ops GetUsage", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetUsageResponse"), query=QUERY,
            tags=("usage",))
async def get_usage(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    start, end, granularity, size = _window(request)
    want_estimate = request.query.get("estimate", "false")
    if want_estimate not in ("true", "false"):
        raise ApiError(400, "estimate must be 'true' or 'false'")
    step = usage_summaries.STEPS[granularity]
    try:
        buckets, next_page_token = usage_summaries.page(start, end, step, size or MAX_SUMMARIES[granularity],
                                                        request.query.get("pageToken", ""))
    except ValueError as err:
        raise ApiError(400, str(err)) from err
    async with request.app[POOL].acquire() as conn:  # one connection for the reads: one round trip fewer each
        groups = await _record_groups(conn, request.app, customer.account_id, granularity, buckets)
        counts = await usage_store.collected_counts(conn, COLLECTORS, buckets[0], buckets[-1] + step,
                                                    "hour" if granularity == "hour" else "day")
    complete = len(COLLECTORS) * (step // HOUR)
    extra = {"currentHourEstimate": await _estimate(request, customer.account_id)} if want_estimate == "true" else {}
    body = usage_summaries.response_json(
        (usage_summaries.summary_parts(b, b + step, groups[b], counts.get(b, 0) < complete) for b in buckets), extra,
        next_page_token)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


_RENDERED: weakref.WeakKeyDictionary[web.Application, usage_summaries.RenderedBuckets] = weakref.WeakKeyDictionary()


async def _record_groups(conn: asyncpg.Connection, app: web.Application, account_id: str, granularity: str,
                         buckets: list[datetime]) -> dict[datetime, bytes]:
    """The rendered record groups of each bucket: kept ones while their day's ledger rows are unchanged, the others
    summed by Postgres (per day from the daily rollup, per hour from the ledger) and rendered."""
    rendered = _RENDERED.setdefault(app, usage_summaries.RenderedBuckets())
    # Versions first: rows read after them are at least as new, so text kept under a version is never older.
    versions = await usage_store.day_versions(conn, account_id, buckets[0].date(), buckets[-1].date())
    out: dict[datetime, bytes] = {}
    missing: list[datetime] = []
    for bucket in buckets:
        text = rendered.get((account_id, granularity, bucket), versions.get(bucket.date()))
        if text is None:
            missing.append(bucket)
        else:
            out[bucket] = text
    if not missing:
        return out
    quantities: dict[datetime, dict[str, dict[str, Decimal]]] = {b: {} for b in missing}
    if granularity == "day":
        rows = await usage_store.account_daily_quantities(conn, account_id, [b.date() for b in missing])
        for r in rows:
            day = datetime(r["day"].year, r["day"].month, r["day"].day, tzinfo=UTC)
            quantities[day].setdefault(r["namespace"], {})[r["metric"]] = r["quantity"]
    else:
        for r in await usage_store.account_hourly_quantities(conn, account_id, missing):
            quantities[r["hour"]].setdefault(r["namespace"], {})[r["metric"]] = r["quantity"]
    for bucket in missing:
        out[bucket] = usage_summaries.record_groups_json(quantities[bucket])
        rendered.put((account_id, granularity, bucket), versions.get(bucket.date()), out[bucket])
    return out
