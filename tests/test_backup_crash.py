"""A worker killed (SIGKILL) in the middle of a dump: the backup still completes, whole and restorable."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client

from activities.backup import RestoreRequest
from launcher import procs
from tcloud.adapters.backups import catalog
from tcloud.adapters.backups.filesystem import FilesystemStore
from tcloud.settings import Settings
from tests import harness
from tests.backup_support import fill, table_checksums, wipe
from tests.figures import Figures
from workflows.backup import BackupInput, BackupOutput, BackupWorkflow, RestoreWorkflow


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    # Its own metrics port: the session's in-process runtime may hold the shared one.
    return settings.model_copy(update={"worker_metrics_port": procs.free_port()})


async def _dump_heartbeated(client: Client, workflow_id: str, within: float = 120) -> int:
    """Wait until the running dump has reported progress; returns the bytes it reported."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        desc = await client.get_workflow_handle(workflow_id).describe()
        for pending in desc.raw_description.pending_activities:
            if pending.activity_type.name == "dump_database" and pending.heartbeat_details.payloads:
                return int(pending.heartbeat_details.payloads[0].data)
        await asyncio.sleep(0.05)
    raise AssertionError("the dump never heartbeated")


async def test_backup_survives_a_worker_killed_mid_dump(
    temporal_client: Client, settings: Settings, pool: asyncpg.Pool, tmp_path: Path, figures: Figures
) -> None:
    await fill(pool, rows=400_000, seed="crash")
    dsn = settings.postgres_dsn.get_secret_value()
    before = await table_checksums(dsn, exclude=frozenset({"public.backups"}))

    first = harness.worker_process(settings, tmp_path / "worker1.log")
    first.start()
    second = harness.worker_process(settings, tmp_path / "worker2.log")
    try:
        await asyncio.to_thread(harness.wait_worker_ready, settings, first)
        workflow_id = f"backup/crash-{secrets.token_hex(3)}"
        handle = await temporal_client.start_workflow(BackupWorkflow.run, BackupInput(), id=workflow_id,
                                                      task_queue=settings.task_queue)
        progressed = await _dump_heartbeated(temporal_client, workflow_id)
        first.kill()
        figures.add("faults injected")
        assert progressed > 0
        store = FilesystemStore(settings.backup_path)
        assert await catalog.backup_ids(store) == ([], [])  # nothing complete, nothing half-visible

        second.start()
        await asyncio.to_thread(harness.wait_worker_ready, settings, second)
        out: BackupOutput = await asyncio.wait_for(handle.result(), timeout=240)
        dump = out.manifest.dumps[0]
        head = await store.head(dump.key)
        assert head is not None and head.sha256 == dump.sha256 and head.size == dump.size > progressed
        assert not list(settings.backup_path.rglob("*.partial"))
        history = await handle.fetch_history()
        attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                    if e.HasField("activity_task_started_event_attributes")]
        assert max(attempts) >= 2  # the dump ran again after the kill

        await wipe(dsn)
        await temporal_client.execute_workflow(
            RestoreWorkflow.run, RestoreRequest(out.manifest.backup_id), id=f"restore/{out.manifest.backup_id}/crash",
            task_queue=settings.task_queue)
        assert await table_checksums(dsn, exclude=frozenset({"public.backups"})) == before
    finally:
        first.kill()
        second.stop()
