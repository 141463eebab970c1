"""Reading usage from the real sources: the server's ``action`` counter in Prometheus, and visibility.

Shared by the collection activities and the API's live estimate. The Prometheus client is synchronous, so
callers run these functions in a thread.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_api_client import PrometheusConnect
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    ListNamespacesRequest,
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
_NAMESPACE_PAGE = 1000
_PART = "tcloud_part"  # the label telling apart the parts of one query's answer
_FEW = 100  # series looked back for, by namespace label, when no more than this many labels
_PLAIN = re.compile(r"[A-Za-z0-9_]+")  # a sanitized label value: safe in a regular expression as it is
# One answer of an instant query: the series' labels and its value as Prometheus sent it.
Answer = tuple[dict[str, str], str]


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


def _by_part(prom: PrometheusConnect, at: datetime, parts: dict[str, str]) -> dict[str, dict[SeriesKey, Answer]]:
    """Several instant queries at ``at`` in one request: each answer labelled with its part's name."""
    query = " or ".join(f'label_replace({expr}, "{_PART}", "{name}", "", "")' for name, expr in parts.items())
    out: dict[str, dict[SeriesKey, Answer]] = {name: {} for name in parts}
    for r in prom.custom_query(query, params={"time": _ts(at)}):
        labels = dict(r["metric"])
        out[labels.pop(_PART)][metering.series_key(labels)] = (labels, r["value"][1])
    return out


def _samples(prom: PrometheusConnect, selector: str, start: datetime, end: datetime) -> list[WindowSeries]:
    """The raw samples in ``[start, end)`` of the series ``selector`` picks."""
    span = int((end - start).total_seconds() * 1000)
    raw = prom.custom_query(f"{ACTION_METRIC}{selector}[{span}ms]", params={"time": _ts(end - _EPSILON)})
    lo = _ts(start)
    return [WindowSeries(r["metric"], [(float(t), metering.parse_counter_value(v)) for t, v in r["values"]
                                       if float(t) >= lo])
            for r in raw]


def _matchers(labels: dict[str, str]) -> str:
    return "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in sorted(labels.items())) + "}"


def action_window(prom: PrometheusConnect, start: datetime, end: datetime, *, namespace_label: str,
                  baseline_lookback: str) -> ActionWindow:
    """Exact billable actions observed in ``[start, end)`` (at most one hour), for every namespace at once.

    One query answers for every series what its count needs when its process did not restart within the window
    (:func:`tcloud.domain.metering.summary_delta`): its last and lowest value in the window, its drops there, and
    its last value in the hour before. Four values a series, where reading every sample of the window (360 a
    series at a 10 s scrape) made the answer grow with the scrape rate. Only if some series had no value in the
    hour before, one more query looks back ``baseline_lookback`` (Prometheus' retention) to tell a new series from
    an idle one, for those series only when they are few. Only the series of a scrape target that restarted within
    the window (a drop in any of its series) are read sample by sample, one query per such target, and counted as
    before (:func:`tcloud.domain.metering.series_deltas`).
    """
    if not start < end <= start + HOUR:
        raise metering.MeteringError(f"window {start}..{end} must be non-empty and at most one hour")
    span = int((end - start).total_seconds() * 1000)
    at = end - _EPSILON  # Prometheus 2.x ranges include both ends: [start, end - 1 ms] holds the window
    inside = f"{ACTION_METRIC}[{max(span - 1, 1)}ms]"
    got = _by_part(prom, at, {"last": f"last_over_time({inside})", "lowest": f"min_over_time({inside})",
                              "drops": f"resets({inside})",
                              "base": f"last_over_time({ACTION_METRIC}[1h] offset {span}ms)"})
    queries = 1
    missing = [key for key in got["last"] if key not in got["base"]]
    if missing:
        queries += 1
        values = {got["last"][key][0].get(namespace_label, "") for key in missing}
        selector = ""
        if len(values) <= _FEW and all(_PLAIN.fullmatch(v) for v in values):
            selector = "{" + f'{namespace_label}=~"{"|".join(sorted(values))}"' + "}"
        older = _by_part(prom, at, {
            "base": f"last_over_time({ACTION_METRIC}{selector}[{baseline_lookback}] offset {span}ms)"})
        got["base"] = {**older["base"], **got["base"]}
    baselines = {key: metering.parse_counter_value(value) for key, (_, value) in got["base"].items()}
    summaries = []
    for key, (labels, last) in got["last"].items():
        base = baselines.get(key)
        # Without a drop inside the window the lowest value is the first: below the baseline, the series reset.
        at_start = base is not None and metering.parse_counter_value(got["lowest"][key][1]) < base
        summaries.append(metering.SeriesSummary(labels, metering.parse_counter_value(last),
                                                _count(got["drops"][key][1]), at_start))
    restarted = metering.restarted_targets(summaries)
    deltas = [(s.labels, metering.summary_delta(s, baselines.get(metering.series_key(s.labels))))
              for s in summaries if metering.target_of(s.labels) not in restarted]
    for target in sorted(restarted):
        queries += 1
        window = _samples(prom, _matchers(dict(zip(metering.TARGET_LABELS, target, strict=True))), start, end)
        deltas += metering.series_deltas(window, baselines)
    return ActionWindow(metering.billable_by_namespace(deltas, namespace_label=namespace_label), queries)


def _count(value: str) -> int:
    """A count Prometheus computed (``resets``), sent as a float."""
    return int(float(value))


async def namespace_retentions(client: Client) -> dict[str, timedelta]:
    """Every namespace the server knows and its retention, a thousand a call (deleted namespaces are not listed).

    One ListNamespaces call per 1,000 namespaces instead of a DescribeNamespace per namespace.
    """
    out: dict[str, timedelta] = {}
    token = b""
    while True:
        resp = await client.workflow_service.list_namespaces(
            ListNamespacesRequest(page_size=_NAMESPACE_PAGE, next_page_token=token))
        for ns in resp.namespaces:
            out[ns.namespace_info.name] = ns.config.workflow_execution_retention_ttl.ToTimedelta()
        token = resp.next_page_token
        if not token:
            return out


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


async def executions_for_hour(client: Client, namespace: str, hour: datetime, retention: timedelta,
                              limit: asyncio.Semaphore | None = None) -> list[ExecutionStorage]:
    """Every execution that was open, or closed but retained, at some time during ``hour``.

    ``limit`` bounds the calls in flight, each held only for one call (a caller measuring many namespaces shares
    one); by default at most 16 describe calls of the namespace's open executions at once.
    """
    end = hour + HOUR
    oldest_close = hour - retention
    query = (f"StartTime < '{end.isoformat()}' AND "
             f"(ExecutionStatus = 'Running' OR CloseTime >= '{oldest_close.isoformat()}')")
    closed: list[ExecutionStorage] = []
    running: list[tuple[datetime, WorkflowExecution]] = []
    token = b""
    limit = limit or asyncio.Semaphore(_DESCRIBE_CONCURRENCY)
    while True:
        async with limit:
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
    sizes = await asyncio.gather(*(_open_history_size(client, namespace, ex, limit) for _, ex in running))
    return closed + [ExecutionStorage(start, None, size) for (start, _), size in zip(running, sizes, strict=True)]
