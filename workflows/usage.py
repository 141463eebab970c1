"""Usage collection workflows: the hourly catch-up run the Schedule starts, and one hour of one collector.

``UsageHourlyWorkflow`` collects every hour each collector still owes since its watermark, so hours missed
while the worker, Temporal or Prometheus was down are collected by the next run, each exactly once
(``usage/<collector>/<hour>`` children; an hour already collected is left untouched).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.usage import CollectHourInput, CollectHourOutput, PendingHoursInput, UsageActivities
    from tcloud.domain.metering import COLLECTORS, floor_hour, hour_id

# Set by the server on workflows a Schedule starts: the nominal time, also for backfills of past times.
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
_COLLECT_TIMEOUT = timedelta(minutes=10)
# Prometheus or Temporal may be down for hours: keep retrying, at most a minute apart.
_COLLECT_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


def collect_workflow_id(collector: str, hour: datetime) -> str:
    """``usage/actions/2026-11-25T13:00Z``: the readable id of one hour's collection."""
    return f"usage/{collector}/{hour_id(hour)}"


@dataclass
class UsageHourlyInput:
    """Collect every missing hour in ``[min(from_hour, watermark), through)``.

    ``through`` (exclusive) defaults to the hour of the run's nominal time: the Schedule's scheduled time (also for
    a backfill of past times), else now. ``from_hour`` defaults to the hour before ``through``.
    """

    through: datetime | None = None
    max_hours: int = 168
    from_hour: datetime | None = None


@dataclass
class UsageHourlyOutput:
    collected: dict[str, list[datetime]] = field(default_factory=dict)
    skipped: dict[str, list[datetime]] = field(default_factory=dict)  # being collected by another run


@workflow.defn(name="UsageCollectHourWorkflow")
class UsageCollectHourWorkflow:
    """One collector, one hour."""

    @workflow.run
    async def run(self, params: CollectHourInput) -> CollectHourOutput:
        if params.collector == "actions":
            # A handful of Prometheus queries: no progress to report in between.
            return await workflow.execute_activity_method(
                UsageActivities.collect_actions_hour, params, start_to_close_timeout=_COLLECT_TIMEOUT,
                retry_policy=_COLLECT_RETRY)
        if params.collector == "storage":
            # One visibility listing per namespace, heartbeating after each.
            return await workflow.execute_activity_method(
                UsageActivities.collect_storage_hour, params, start_to_close_timeout=3 * _COLLECT_TIMEOUT,
                heartbeat_timeout=timedelta(minutes=2), retry_policy=_COLLECT_RETRY)
        raise ApplicationError(f"unknown collector {params.collector!r}", non_retryable=True)


@workflow.defn(name="UsageHourlyWorkflow")
class UsageHourlyWorkflow:
    """Collect every hour each collector owes, oldest first; continue as new past ``max_hours``.

    The collectors run side by side: a Prometheus outage holds up ``actions`` only, while ``storage`` (read from
    visibility) keeps measuring each hour as close to its end as possible.
    """

    def __init__(self) -> None:
        self._out = UsageHourlyOutput()

    @workflow.run
    async def run(self, params: UsageHourlyInput) -> UsageHourlyOutput:
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        through = floor_hour(params.through or scheduled or workflow.now())
        more = await asyncio.gather(*(self._collect(c, through, params) for c in COLLECTORS))
        if any(more):
            workflow.continue_as_new(UsageHourlyInput(through, params.max_hours, params.from_hour))
        # Report collectors in a fixed order whatever order they finished in.
        return UsageHourlyOutput(
            collected={c: self._out.collected[c] for c in COLLECTORS if c in self._out.collected},
            skipped={c: self._out.skipped[c] for c in COLLECTORS if c in self._out.skipped})

    async def _collect(self, collector: str, through: datetime, params: UsageHourlyInput) -> bool:
        """Collect what ``collector`` owes, oldest hour first; returns whether more remain past ``max_hours``."""
        pending = await workflow.execute_activity_method(
            UsageActivities.pending_hours,
            PendingHoursInput(collector, through, params.max_hours, params.from_hour),
            start_to_close_timeout=timedelta(seconds=30),
        )
        for hour in pending.hours:
            try:
                await workflow.execute_child_workflow(
                    UsageCollectHourWorkflow.run, CollectHourInput(collector, hour),
                    id=collect_workflow_id(collector, hour),
                )
            except WorkflowAlreadyStartedError:
                self._out.skipped.setdefault(collector, []).append(hour)
                continue
            self._out.collected.setdefault(collector, []).append(hour)
        return pending.more
