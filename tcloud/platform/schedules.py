"""Temporal Schedules the platform owns: created once, brought up to date on every worker start."""

from __future__ import annotations

from temporalio.client import Client, Schedule, ScheduleAlreadyRunningError, ScheduleUpdate, ScheduleUpdateInput


async def upsert_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create ``schedule_id``, or replace an existing schedule's definition with ``schedule`` (idempotent)."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)
