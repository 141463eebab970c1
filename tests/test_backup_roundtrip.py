"""Backup → wipe → restore on real Postgres through the real worker and Temporal; the operator API; the CLI."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer

from activities.backup import RestoreRequest
from tcloud.adapters.backups import catalog
from tcloud.adapters.backups.filesystem import FilesystemStore
from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.settings import Settings
from tests import harness
from tests.backup_support import fill, table_checksums, wipe
from workflows.backup import BackupInput, BackupOutput, BackupWorkflow, RestoreWorkflow

REPO = Path(__file__).resolve().parents[1]
# Written after the dump by the backup itself, and re-written by a restore: compared on its own.
BACKUPS_TABLE = frozenset({"public.backups"})


@pytest_asyncio.fixture(scope="module")
async def extra_dsn(postgres: harness.Postgres) -> AsyncIterator[str]:
    """A second database standing in for Temporal's persistence database."""
    name = "t_bk_temporal_" + secrets.token_hex(3)
    admin = await asyncpg.connect(postgres.server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres.dsn(name)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="module")
def settings(settings: Settings, extra_dsn: str) -> Settings:
    return settings.model_copy(update={"backup_extra_dsns": {"temporal": SecretStr(extra_dsn)}})


def _dsn(settings: Settings) -> str:
    return settings.postgres_dsn.get_secret_value()


async def _backup(client: Client, settings: Settings) -> BackupOutput:
    return await client.execute_workflow(
        "BackupWorkflow", BackupInput(), id=f"backup/test-{secrets.token_hex(4)}", task_queue=settings.task_queue,
        result_type=BackupOutput)


async def _restore(client: Client, settings: Settings, request: RestoreRequest, *, wid: str | None = None) -> None:
    wid = wid or f"restore/{request.backup_id}/{secrets.token_hex(3)}"
    await client.execute_workflow(RestoreWorkflow.run, request, id=wid, task_queue=settings.task_queue)


async def test_round_trip_restores_every_table_identically(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool, extra_dsn: str
) -> None:
    await fill(pool, rows=5000, seed="platform")
    async with asyncpg.create_pool(extra_dsn, min_size=1, max_size=1) as extra:
        await fill(extra, rows=700, seed="temporal")
    before = await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE)
    before_extra = await table_checksums(extra_dsn)
    assert before["public.bk_items"][0] == 5000 and before["public.bk_tags"][0] > 0

    out = await _backup(temporal_client, settings)
    manifest = out.manifest
    assert [d.database for d in manifest.dumps] == ["platform", "temporal"]
    store = FilesystemStore(settings.backup_path)
    for dump in manifest.dumps:
        head = await store.head(dump.key)
        assert head is not None and head.size == dump.size > 0
        assert head.sha256 == dump.sha256
        assert head.metadata["backup-id"] == manifest.backup_id and head.metadata["database"] == dump.database
    rows = await pool.fetch("SELECT database, size_bytes, sha256 FROM backups WHERE backup_id = $1 ORDER BY 1",
                            manifest.backup_id)
    assert [(r["database"], r["size_bytes"], r["sha256"]) for r in rows] == [
        (d.database, d.size, d.sha256) for d in manifest.dumps]

    # Lose both databases, then restore each: every table identical.
    await wipe(_dsn(settings))
    await wipe(extra_dsn)
    assert await table_checksums(_dsn(settings)) == {}
    await _restore(temporal_client, settings, RestoreRequest(manifest.backup_id), wid=f"restore/{manifest.backup_id}")
    await _restore(temporal_client, settings, RestoreRequest(manifest.backup_id, database="temporal"))
    assert await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE) == before
    assert await table_checksums(extra_dsn) == before_extra
    # The restored backups table lists the backup again.
    assert await pool.fetchval("SELECT count(*) FROM backups WHERE backup_id = $1 AND deleted_at IS NULL",
                               manifest.backup_id) == 2
    # Both workflows replay deterministically from their histories.
    replayer = Replayer(workflows=[BackupWorkflow, RestoreWorkflow], data_converter=DATA_CONVERTER)
    for wid in (manifest.workflow_id, f"restore/{manifest.backup_id}"):
        await replayer.replay_workflow(await temporal_client.get_workflow_handle(wid).fetch_history())


async def test_non_empty_target_is_refused_unless_forced(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    await fill(pool, rows=200, seed="refuse")
    out = await _backup(temporal_client, settings)
    snapshot = await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE)
    await pool.execute("DELETE FROM bk_tags WHERE item_id % 2 = 0")
    await pool.execute("UPDATE bk_items SET name = 'changed' WHERE id < 50")
    changed = await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE)

    with pytest.raises(WorkflowFailureError) as refused:
        await _restore(temporal_client, settings, RestoreRequest(out.manifest.backup_id))
    message = str(refused.value.cause)
    assert "is not empty" in message and "public.bk_items" in message and "force" in message
    assert await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE) == changed

    await _restore(temporal_client, settings, RestoreRequest(out.manifest.backup_id, force=True))
    assert await table_checksums(_dsn(settings), exclude=BACKUPS_TABLE) == snapshot


async def test_unknown_backup_and_database_are_refused(
    worker: None, temporal_client: Client, settings: Settings
) -> None:
    with pytest.raises(WorkflowFailureError) as missing:
        await _restore(temporal_client, settings, RestoreRequest("20000101T000000Z"))
    assert "no complete backup 20000101T000000Z" in str(missing.value.cause)
    out = await _backup(temporal_client, settings)
    with pytest.raises(WorkflowFailureError) as unknown:
        await _restore(temporal_client, settings, RestoreRequest(out.manifest.backup_id, database="nope"))
    assert "has no dump of 'nope'" in str(unknown.value.cause)


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **harness.settings_env(settings)}
    return subprocess.run([sys.executable, "-m", "launcher.restore", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


async def test_restore_command_prints_what_it_overwrites(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    out = await _backup(temporal_client, settings)
    latest = (await catalog.backup_ids(FilesystemStore(settings.backup_path)))[0][-1]
    assert latest == out.manifest.backup_id

    refused = await asyncio.to_thread(_cli, settings, "latest")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"backup {latest}" in refused.stdout
    assert "public.bk_items" in refused.stdout and "rows" in refused.stdout
    assert "is not empty" in refused.stderr and "--force" in refused.stderr

    await pool.execute("DELETE FROM bk_tags")
    done = await asyncio.to_thread(_cli, settings, latest, "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored {out.manifest.dumps[0].size} bytes of backup {latest}" in done.stdout
    assert await pool.fetchval("SELECT count(*) FROM bk_tags") > 0

    listed = await asyncio.to_thread(_cli, settings, "--list")
    assert latest in listed.stdout
    bad = await asyncio.to_thread(_cli, settings, "yesterday")
    assert bad.returncode != 0 and "not a backup id" in bad.stderr


async def test_offline_restore_of_the_temporal_database(
    worker: None, temporal_client: Client, settings: Settings, extra_dsn: str
) -> None:
    async with asyncpg.create_pool(extra_dsn, min_size=1, max_size=1) as extra:
        await fill(extra, rows=100, seed="offline")
    before = await table_checksums(extra_dsn)
    out = await _backup(temporal_client, settings)

    refused = await asyncio.to_thread(_cli, settings, out.manifest.backup_id, "--database", "temporal", "--offline")
    assert refused.returncode == 1 and "public.bk_items" in refused.stdout and "not empty" in refused.stderr
    await wipe(extra_dsn)
    done = await asyncio.to_thread(_cli, settings, out.manifest.backup_id, "--database", "temporal", "--offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert await table_checksums(extra_dsn) == before
    unknown = await asyncio.to_thread(_cli, settings, out.manifest.backup_id, "--database", "nope", "--offline")
    assert unknown.returncode == 1 and "no dump of 'nope'" in unknown.stderr


async def test_operator_api_lists_and_starts_backups(
    worker: None, api: TestClient, operator_headers: dict[str, str], temporal_client: Client
) -> None:
    assert (await api.get("/backups")).status == 401
    forbidden = await api.get("/backups", headers={"Authorization": "Bearer nope"})
    assert forbidden.status == 403 and (await forbidden.json())["message"]

    started = await api.post("/backups", headers=operator_headers)
    assert started.status == 202, await started.text()
    body = await started.json()
    await temporal_client.get_workflow_handle(body["workflow_id"]).result()

    listed = await (await api.get("/backups", headers=operator_headers)).json()
    ids = [b["backup_id"] for b in listed["backups"]]
    assert body["backup_id"] in ids and ids == sorted(ids, reverse=True)
    one = await api.get(f"/backups/{body['backup_id']}", headers=operator_headers)
    assert one.status == 200
    assert {d["database"] for d in (await one.json())["dumps"]} == {"platform", "temporal"}

    for path, status in (("/backups/latest", 400), ("/backups/20000101T000000Z", 404),
                         ("/backups?include_deleted=maybe", 400)):
        resp = await api.get(path, headers=operator_headers)
        assert resp.status == status and (await resp.json())["message"], path
    unknown_field = await api.post("/backups", json={"keep": 3}, headers=operator_headers)
    assert unknown_field.status == 400
    bad_days = await api.post("/backups", json={"keep_days": 0}, headers=operator_headers)
    assert bad_days.status == 400
    not_json = await api.post("/backups", data="x", headers={**operator_headers, "Content-Type": "text/plain"})
    assert not_json.status == 415
    assert "/backups" in (await (await api.get("/openapi.json")).json())["paths"]
