"""The OCI Object Storage store through the real ``oci`` SDK against a local fake that checks every signature."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import oci
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from activities.backup import BackupActivities, RestoreRequest
from tcloud.adapters.backups.factory import open_store
from tcloud.adapters.backups.oci_store import OciObjectStore
from tcloud.adapters.backups.store import ObjectNotFoundError
from tcloud.settings import Settings
from tests import oci_fake
from tests.backup_support import fill, table_checksums, wipe
from workflows.backup import BackupInput, BackupOutput, BackupWorkflow, RestoreWorkflow

PART = 64 * 1024
BUCKET = "tcloud-backups-test"


@pytest.fixture(scope="module")
def oci_key(tmp_path_factory: pytest.TempPathFactory) -> oci_fake.ApiKey:
    return oci_fake.make_api_key(tmp_path_factory.mktemp("oci"))


@pytest_asyncio.fixture(scope="module")
async def fake(oci_key: oci_fake.ApiKey) -> AsyncIterator[tuple[oci_fake.FakeObjectStorage, str]]:
    storage, server = await oci_fake.start(oci_key, page_size=2)  # small pages: listing must follow them
    yield storage, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture(scope="module")
def settings(settings: Settings, oci_key: oci_fake.ApiKey, fake: tuple[oci_fake.FakeObjectStorage, str]) -> Settings:
    return settings.model_copy(update={
        "backup_store": "oci", "oci_config_file": oci_key.config_file, "oci_endpoint": fake[1],
        "oci_bucket": BUCKET, "oci_region": "eu-frankfurt-1"})


def _all_signed(storage: oci_fake.FakeObjectStorage, since: int) -> None:
    """Every request since index ``since`` of the fake's log carried a valid signature."""
    assert storage.requests[since:], "no request reached the fake"
    unsigned = [r for r in storage.requests[since:] if not r[2]]
    assert unsigned == []


async def test_store_calls_through_the_sdk_arrive_signed(
    settings: Settings, fake: tuple[oci_fake.FakeObjectStorage, str]
) -> None:
    storage, _ = fake
    since = len(storage.requests)
    store = await OciObjectStore.from_settings(settings, part_bytes=PART)
    prefix = f"unit-{secrets.token_hex(3)}/"
    big = secrets.token_bytes(3 * PART + 123)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 10_000):
            yield big[i:i + 10_000]

    stored = await store.put_stream(prefix + "big.bin", chunks(), {"database": "platform"})
    assert prefix + "big.bin" in storage.committed_multipart  # four parts, committed
    small = await store.put_bytes(prefix + "small.json", b'{"a": 1}', {"kind": "manifest"})
    assert prefix + "small.json" not in storage.committed_multipart  # one PUT

    assert await store.get_bytes(prefix + "big.bin") == big
    chunked = b"".join([c async for c in store.get_stream(prefix + "big.bin")])
    assert chunked == big and stored.size == len(big)
    head_big, head_small = await store.head(prefix + "big.bin"), await store.head(prefix + "small.json")
    assert head_big is not None and head_big.size == len(big) and head_big.metadata["database"] == "platform"
    assert head_small is not None and head_small.sha256 == small.sha256 and head_small.metadata["kind"] == "manifest"

    for i in range(3):
        await store.put_bytes(f"{prefix}page/{i}", b"x", {})
    assert await store.list(prefix) == sorted([prefix + "big.bin", prefix + "small.json"] +
                                              [f"{prefix}page/{i}" for i in range(3)])
    await store.delete(prefix + "small.json")
    await store.delete(prefix + "small.json")  # absent is fine
    assert await store.head(prefix + "small.json") is None
    with pytest.raises(ObjectNotFoundError):
        await store.get_bytes(prefix + "small.json")
    assert {m for m, _, _ in storage.requests[since:]} >= {"PUT", "POST", "GET", "HEAD", "DELETE"}
    _all_signed(storage, since)


async def test_failed_stream_aborts_the_multipart_upload(
    settings: Settings, fake: tuple[oci_fake.FakeObjectStorage, str]
) -> None:
    storage, _ = fake
    store = await OciObjectStore.from_settings(settings, part_bytes=PART)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (2 * PART)
        raise RuntimeError("pg_dump died")

    with pytest.raises(RuntimeError):
        await store.put_stream("unit/broken.bin", broken(), {})
    assert storage.uploads == {}
    assert await store.head("unit/broken.bin") is None


async def test_unsigned_or_wrongly_signed_requests_are_rejected(
    settings: Settings, fake: tuple[oci_fake.FakeObjectStorage, str], tmp_path: Path, oci_key: oci_fake.ApiKey
) -> None:
    _, url = fake
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{url}/n/{oci_fake.NAMESPACE}/b/{BUCKET}/o")
        assert resp.status == 401
    # Same identity in the config, a different private key: the signature does not verify.
    other = oci_fake.make_api_key(tmp_path)
    forged = oci_key.config_file.read_text().replace(str(oci_key.key_file), str(other.key_file))
    (tmp_path / "forged").write_text(forged)
    store = await OciObjectStore.from_settings(
        settings.model_copy(update={"oci_config_file": tmp_path / "forged", "oci_namespace": oci_fake.NAMESPACE}))
    with pytest.raises(oci.exceptions.ServiceError) as err:
        await store.list("")
    assert err.value.status == 401


async def _round_trip(client: Client, task_queue: str, settings: Settings, pool: asyncpg.Pool,
                      storage: oci_fake.FakeObjectStorage) -> BackupOutput:
    since = len(storage.requests)
    dsn = settings.postgres_dsn.get_secret_value()
    await fill(pool, rows=4000, seed=task_queue)
    before = await table_checksums(dsn, exclude=frozenset({"public.backups"}))
    out: BackupOutput = await client.execute_workflow(
        BackupWorkflow.run, BackupInput(), id=f"backup/oci-{secrets.token_hex(4)}", task_queue=task_queue)
    dump = out.manifest.dumps[0]
    assert out.manifest.store == "oci" and (BUCKET, dump.key) in storage.objects
    await wipe(dsn)
    await client.execute_workflow(RestoreWorkflow.run, RestoreRequest(out.manifest.backup_id),
                                  id=f"restore/{out.manifest.backup_id}/{secrets.token_hex(3)}", task_queue=task_queue)
    assert await table_checksums(dsn, exclude=frozenset({"public.backups"})) == before
    _all_signed(storage, since)
    return out


async def test_round_trip_through_the_real_worker(
    worker: None, temporal_client: Client, settings: Settings, pool: asyncpg.Pool,
    fake: tuple[oci_fake.FakeObjectStorage, str]
) -> None:
    assert isinstance(await open_store(settings), OciObjectStore)
    out = await _round_trip(temporal_client, settings.task_queue, settings, pool, fake[0])
    blob = fake[0].objects[(BUCKET, out.manifest.dumps[0].key)]
    # Fits one part: one PUT, so sha256 and size are in the object's own metadata.
    assert blob.metadata["opc-meta-sha256"] == out.manifest.dumps[0].sha256
    assert blob.metadata["opc-meta-size"] == str(out.manifest.dumps[0].size)


async def test_multipart_round_trip_and_corruption_refused(
    temporal_client: Client, settings: Settings, pool: asyncpg.Pool, fake: tuple[oci_fake.FakeObjectStorage, str]
) -> None:
    storage, _ = fake
    store = await OciObjectStore.from_settings(settings, part_bytes=PART)
    acts = BackupActivities(settings=settings, pool=pool, store=store)
    task_queue = f"tcloud-test-oci-{secrets.token_hex(3)}"
    worker = Worker(temporal_client, task_queue=task_queue, workflows=[BackupWorkflow, RestoreWorkflow],
                    activities=[acts.backup_targets, acts.dump_database, acts.record_backup, acts.prune_backups,
                                acts.inspect_restore, acts.restore_database])
    async with worker:
        out = await _round_trip(temporal_client, task_queue, settings, pool, storage)
        dump = out.manifest.dumps[0]
        assert dump.size > PART and dump.key in storage.committed_multipart
        assert storage.objects[(BUCKET, dump.key)].metadata["opc-meta-backup-id"] == out.manifest.backup_id

        blob = storage.objects[(BUCKET, dump.key)]
        blob.data = blob.data[:100] + bytes([blob.data[100] ^ 1]) + blob.data[101:]
        with pytest.raises(WorkflowFailureError) as refused:
            await temporal_client.execute_workflow(
                RestoreWorkflow.run, RestoreRequest(out.manifest.backup_id, force=True),
                id=f"restore/{out.manifest.backup_id}/corrupt", task_queue=task_queue)
        assert f"backup {out.manifest.backup_id} is corrupted" in str(refused.value.cause)
