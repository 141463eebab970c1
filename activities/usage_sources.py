"""Reading usage from the real sources: the server's ``action`` counter in Prometheus, and visibility.

Shared by the collection activities and the API's live estimate. The Prometheus client is synchronous, so
callers run these functions in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_api_client import PrometheusConnect
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeWorkflowExecutionRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tcloud.domain import metering
from tcloud.domain.metering import HOUR, ExecutionStorage, SeriesKey, WindowSeries

ACTION_METRIC = "action"
# Prometheus 2.x range selectors include both ends: evaluating a millisecond early keeps `end` out.
_EPSILON = timedelta(milliseconds=1)
_DESCRIBE_CONCURRENCY = 16


class PrometheusNotCaughtUp(Exception):
    """Prometheus has not scraped past the end of the window yet, so the window is not final."""


@dataclass(frozen=True)
class ActionWindow:
    """Billable actions per sanitized namespace label and action type, and how many queries that took."""

    counts: dict[str, dict[str, int]]
    queries: int


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def latest_scrape(prom: PrometheusConnect) -> datetime | None:
    """The time by which every scrape target has been scraped at least once (the oldest latest scrape)."""
    result = prom.custom_query("min(timestamp(up))")
    if not result:
        return None
    return datetime.fromtimestamp(float(result[0]["value"][1]), UTC)


def _baselines(prom: PrometheusConnect, at: datetime, lookback: str) -> dict[SeriesKey, int]:
    result = prom.custom_query(f"last_over_time({ACTION_METRIC}[{lookback}])", params={"time": _ts(at - _EPSILON)})
    return {metering.series_key(r["metric"]): metering.parse_counter_value(r["value"][1]) for r in result}


def action_window(prom: PrometheusConnect, start: datetime, end: datetime, *, namespace_label: str,
                  baseline_lookback: str) -> ActionWindow:
    """Exact billable actions observed in ``[start, end)`` (at most one hour), for every namespace at once.

    Uses a constant number of queries whatever the number of namespaces: the raw samples of the window, each
    series' last value before the window from the last hour, and, only if some series had none there, from
    ``baseline_lookback`` (Prometheus' retention) to tell a new series from an idle one.
    """
    if not start < end <= start + HOUR:
        raise metering.MeteringError(f"window {start}..{end} must be non-empty and at most one hour")
    seconds = int((end - start).total_seconds() * 1000)
    raw = prom.custom_query(f"{ACTION_METRIC}[{seconds}ms]", params={"time": _ts(end - _EPSILON)})
    lo = _ts(start)
    window = [
        WindowSeries(r["metric"], [(float(t), metering.parse_counter_value(v)) for t, v in r["values"]
                                   if float(t) >= lo])
        for r in raw
    ]
    queries = 2
    baselines = _baselines(prom, start, "1h")
    if any(metering.series_key(s.labels) not in baselines for s in window if s.samples):
        queries += 1
        older = _baselines(prom, start, baseline_lookback)
        baselines = {**older, **baselines}
    return ActionWindow(metering.action_deltas(window, baselines, namespace_label=namespace_label), queries)


async def namespace_retention(client: Client, namespace: str) -> timedelta | None:
    """The namespace's retention on the server, or None if the server does not know the namespace."""
    try:
        resp = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return resp.config.workflow_execution_retention_ttl.ToTimedelta()


async def _open_history_size(client: Client, namespace: str, execution: WorkflowExecution,
                             limit: asyncio.Semaphore) -> int:
    """Visibility records an open execution's history size only when it closes: ask the execution itself."""
    async with limit:
        try:
            resp = await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(namespace=namespace, execution=execution))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return 0
            raise
    return resp.workflow_execution_info.history_size_bytes


async def executions_for_hour(client: Client, namespace: str, hour: datetime,
                              retention: timedelta) -> list[ExecutionStorage]:
    """Every execution that was open, or closed but retained, at some time during ``hour``."""
    end = hour + HOUR
    oldest_close = hour - retention
    query = (f"StartTime < '{end.isoformat()}' AND "
             f"(ExecutionStatus = 'Running' OR CloseTime >= '{oldest_close.isoformat()}')")
    closed: list[ExecutionStorage] = []
    running: list[tuple[datetime, WorkflowExecution]] = []
    token = b""
    while True:
        resp = await client.workflow_service.list_workflow_executions(ListWorkflowExecutionsRequest(
            namespace=namespace, query=query, page_size=1000, next_page_token=token))
        for info in resp.executions:
            start = info.start_time.ToDatetime(UTC)
            if info.HasField("close_time") and info.close_time.seconds > 0:
                closed.append(ExecutionStorage(start, info.close_time.ToDatetime(UTC), info.history_size_bytes))
            else:
                running.append((start, info.execution))
        token = resp.next_page_token
        if not token:
            break
    limit = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)
    sizes = await asyncio.gather(*(_open_history_size(client, namespace, ex, limit) for _, ex in running))
    return closed + [ExecutionStorage(start, None, size) for (start, _), size in zip(running, sizes, strict=True)]
