"""Routes: usage, in the shape of Cloud Ops ``GetUsage`` (daily summaries, or hourly), with a live estimate."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from temporalio.api.cloud.usage.v1 import Summary

from activities import usage_sources
from api import usage_summaries
from api.appkeys import POOL, SETTINGS
from api.auth import require_customer
from api.cloud_json import proto_schema
from api.errors import ApiError
from api.openapi import documented
from api.usage_summaries import LedgerEntry
from tcloud.domain import metering
from tcloud.domain.metering import floor_hour
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


def _window(request: web.Request) -> tuple[datetime, datetime, str]:
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
    if (end - start) / step > MAX_SUMMARIES[granularity]:
        raise ApiError(400, f"at most {MAX_SUMMARIES[granularity]} {granularity}s per request")
    return start, end, granularity


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
    customer = await require_customer(request)
    start, end, granularity = _window(request)
    want_estimate = request.query.get("estimate", "false")
    if want_estimate not in ("true", "false"):
        raise ApiError(400, "estimate must be 'true' or 'false'")
    pool = request.app[POOL]
    rows = await usage_store.account_ledger_between(pool, customer.account_id, start, end)
    marks = await usage_store.collected_hours_between(pool, start, end)
    collected: dict[str, set[datetime]] = {}
    for m in marks:
        collected.setdefault(m["collector"], set()).add(m["hour"])
    items = usage_summaries.summaries((LedgerEntry(r["namespace"], r["hour"], r["metric"], r["quantity"])
                                       for r in rows), collected, start, end, usage_summaries.STEPS[granularity])
    body = usage_summaries.to_json(items)
    body["nextPageToken"] = ""
    if want_estimate == "true":
        body["currentHourEstimate"] = await _estimate(request, customer.account_id)
    return web.json_response(body)
