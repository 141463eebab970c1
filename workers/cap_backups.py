"""Registration of the backups capability: its workflows, activities and the daily schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from activities.backup import BackupActivities
from tcloud.platform.schedules import upsert_schedule
from workers.capability import Clients, activity_methods
from workflows.backup import BackupInput, BackupWorkflow, RestoreWorkflow

BACKUP_HOUR_UTC = 3


def schedule_id(prefix: str) -> str:
    return f"{prefix}backup-daily"


def workflows() -> list[type]:
    return [BackupWorkflow, RestoreWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    return activity_methods(BackupActivities(settings=c.settings, pool=c.pool))


def daily_schedule(task_queue: str, prefix: str) -> Schedule:
    """Every day at 03:00 UTC; a run still going when the next is due makes the next one skip."""
    return Schedule(
        action=ScheduleActionStartWorkflow(BackupWorkflow.run, BackupInput(), id=f"{prefix}backup/daily",
                                           task_queue=task_queue),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(BACKUP_HOUR_UTC)],
                                                          minute=[ScheduleRange(0)], second=[ScheduleRange(0)])]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(c: Clients) -> None:
    """Create the daily backup schedule, or bring an existing one up to date (idempotent)."""
    await upsert_schedule(c.temporal, schedule_id(c.settings.schedule_prefix),
                          daily_schedule(c.settings.task_queue, c.settings.schedule_prefix))
