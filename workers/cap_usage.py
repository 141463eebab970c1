"""Registration of the usage capability: its workflows, activities and the hourly Schedule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from activities.usage import UsageActivities
from tcloud.platform.schedules import upsert_schedule
from workers.capability import Clients, activity_methods
from workflows.usage import UsageCollectHourWorkflow, UsageHourlyInput, UsageHourlyWorkflow

# Two minutes past each hour, once Prometheus has scraped past the hour's end.
SCHEDULE_OFFSET = timedelta(minutes=2)


def schedule_id(prefix: str) -> str:
    return f"{prefix}usage-hourly"


def workflows() -> list[type]:
    return [UsageHourlyWorkflow, UsageCollectHourWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    return activity_methods(
        UsageActivities(settings=c.settings, pool=c.pool, prometheus=c.prometheus, temporal=c.temporal))


def hourly_schedule(task_queue: str, prefix: str) -> Schedule:
    """Every hour: collect what every collector owes. A run still going buffers one more (never two at once);
    runs missed while Temporal was down are caught up within a day, and the watermark covers anything older."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            UsageHourlyWorkflow.run, UsageHourlyInput(), id=f"{prefix}usage/hourly", task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1), offset=SCHEDULE_OFFSET)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE, catchup_window=timedelta(days=1)),
    )


async def ensure_schedules(c: Clients) -> None:
    """Create the hourly usage Schedule, or bring an existing one to the current definition (idempotent)."""
    await upsert_schedule(c.temporal, schedule_id(c.settings.schedule_prefix),
                          hourly_schedule(c.settings.task_queue, c.settings.schedule_prefix))
