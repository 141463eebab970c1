"""Retention (nine daily backups in, seven kept), corrupted objects refused, the daily schedule; real parts."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowFailureError

from activities.backup import RestoreRequest
from tcloud.adapters.backups import catalog
from tcloud.adapters.backups.filesystem import FilesystemStore
from tcloud.adapters.backups.store import check_key
from tcloud.settings import Settings
from tests.backup_support import fill, table_checksums
from workers import cap_backups
from workers.registry import Clients
from workflows.backup import BackupInput, BackupOutput, RestoreWorkflow

DAYS = [f"202611{d:02d}T030000Z" for d in range(1, 10)]  # nine daily backups, Nov 1 to Nov 9


async def _backup(client: Client, settings: Settings, backup_id: str) -> BackupOutput:
    return await client.execute_workflow(
        "BackupWorkflow", BackupInput(backup_id=backup_id), id=f"backup/{backup_id}/{secrets.token_hex(3)}",
        task_queue=settings.task_queue, result_type=BackupOutput)


def test_retention_keeps_the_newest_days() -> None:
    complete = ["20261101T030000Z", "20261102T030000Z", "20261102T150000Z", "20261103T030000Z"]
    # Two backups on Nov 2 count as one day: keeping two days keeps three backups.
    assert catalog.to_prune(complete, [], 2) == ["20261101T030000Z"]
    # Leftovers of failed runs go when older than the oldest kept backup, never when newer (may be running).
    assert catalog.to_prune(complete, ["20261030T030000Z", "20261104T030000Z"], 2) == [
        "20261030T030000Z", "20261101T030000Z"]
    assert catalog.to_prune([], ["20261030T030000Z"], 7) == []
    assert catalog.to_prune(complete, [], 0) == catalog.to_prune(complete, [], 1)


def test_object_keys_cannot_escape_the_store() -> None:
    for bad in ("", "/etc/passwd", "../x", "backups/../../x", "a//b", "a b", "backups/./x"):
        with pytest.raises(ValueError):
            check_key(bad)
    assert check_key("backups/20261101T030000Z/platform.pgdump")


async def test_nine_daily_backups_in_seven_kept(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    await fill(pool, rows=300)
    store = FilesystemStore(settings.backup_path)
    # A failed run's leftover from before all of them (no manifest): retention removes it too.
    await store.put_bytes("backups/20261020T030000Z/platform.pgdump", b"partial", {})
    outputs = [await _backup(temporal_client, settings, backup_id) for backup_id in DAYS]

    complete, incomplete = await catalog.backup_ids(store)
    assert complete == DAYS[2:]
    assert incomplete == []
    # The leftover is older than the first backup, so the first run removes it; then one day per run.
    assert [o.pruned.deleted for o in outputs] == [["20261020T030000Z"]] + [[]] * 6 + [
        ["20261101T030000Z"], ["20261102T030000Z"]]
    assert outputs[-1].pruned.kept == DAYS[2:]
    assert not (settings.backup_path / "backups" / DAYS[0]).exists()
    live = await pool.fetch("SELECT DISTINCT backup_id FROM backups WHERE deleted_at IS NULL ORDER BY 1")
    assert [r["backup_id"] for r in live] == DAYS[2:]
    gone = await pool.fetch("SELECT DISTINCT backup_id FROM backups WHERE deleted_at IS NOT NULL ORDER BY 1")
    assert [r["backup_id"] for r in gone] == DAYS[:2]
    # The same backup id again replaces that backup whole: manifest, objects and rows agree, still seven.
    again = await _backup(temporal_client, settings, DAYS[-1])
    assert again.pruned.deleted == [] and again.pruned.kept == DAYS[2:]
    manifest = await catalog.read_manifest(store, DAYS[-1])
    assert manifest is not None and manifest.dumps == again.manifest.dumps
    head = await store.head(manifest.dumps[0].key)
    assert head is not None and head.sha256 == manifest.dumps[0].sha256
    assert await pool.fetchval("SELECT sha256 FROM backups WHERE backup_id = $1", DAYS[-1]) == head.sha256


@pytest.mark.parametrize("damage", ["flip", "truncate"])
async def test_corrupted_backup_is_refused_and_target_untouched(
    damage: str, worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    await fill(pool, rows=50, seed=damage)
    backup_id = f"20261110T0{len(damage)}0000Z"
    out = await _backup(temporal_client, settings, backup_id)
    path: Path = settings.backup_path / out.manifest.dumps[0].key
    data = bytearray(await asyncio.to_thread(path.read_bytes))
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-100:]
    await asyncio.to_thread(path.write_bytes, bytes(data))
    await pool.execute("DELETE FROM bk_tags")
    before = await table_checksums(settings.postgres_dsn.get_secret_value())

    with pytest.raises(WorkflowFailureError) as refused:
        await temporal_client.execute_workflow(
            RestoreWorkflow.run, RestoreRequest(backup_id, force=True), id=f"restore/{backup_id}/{damage}",
            task_queue=settings.task_queue)
    message = str(refused.value.cause)
    assert f"backup {backup_id} is corrupted" in message and "Refusing to restore" in message
    assert await table_checksums(settings.postgres_dsn.get_secret_value()) == before


async def test_daily_schedule_is_created_once_and_can_be_triggered(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    prefix = f"t{secrets.token_hex(3)}-"
    scheduled = settings.model_copy(update={"schedules_enabled": True, "schedule_prefix": prefix})
    clients = Clients(settings=scheduled, pool=pool, temporal=temporal_client, stripe=None,  # type: ignore[arg-type]
                      prometheus=None)  # type: ignore[arg-type]
    await cap_backups.ensure_schedules(clients)
    await cap_backups.ensure_schedules(clients)  # idempotent: updates in place
    handle = temporal_client.get_schedule_handle(f"{prefix}backup-daily")
    try:
        desc = await handle.describe()
        calendar = desc.schedule.spec.calendars[0]
        assert [r.start for r in calendar.hour] == [cap_backups.BACKUP_HOUR_UTC]
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "BackupWorkflow"
        assert action.task_queue == settings.task_queue

        before, _ = await catalog.backup_ids(FilesystemStore(settings.backup_path))
        await handle.trigger()  # what `temporal schedule trigger` does
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            desc = await handle.describe()
            if desc.info.recent_actions:
                started = desc.info.recent_actions[-1].action
                break
            assert asyncio.get_running_loop().time() < deadline, "schedule never started a workflow"
            await asyncio.sleep(0.2)
        result = await temporal_client.get_workflow_handle(
            started.workflow_id, run_id=started.first_execution_run_id, result_type=BackupOutput).result()
        assert started.workflow_id.startswith(f"{prefix}backup/daily")
        after, _ = await catalog.backup_ids(FilesystemStore(settings.backup_path))
        assert result.manifest.backup_id in after and result.manifest.backup_id not in before
        assert result.manifest.created_at - desc.info.recent_actions[-1].started_at < timedelta(minutes=1)
    finally:
        await handle.delete()
