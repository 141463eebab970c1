"""Backup and restore activities: stream pg_dump to the store, record, prune; verify and pg_restore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud.adapters.backups import catalog, pgtools, restoring
from tcloud.adapters.backups.factory import open_store
from tcloud.adapters.backups.store import BackupStore
from tcloud.settings import Settings
from tcloud.store import backups as backups_store

PLATFORM_DATABASE = "platform"


@dataclass
class BackupTargets:
    databases: list[str]


@dataclass
class DumpInput:
    backup_id: str
    database: str
    created_at: datetime


@dataclass
class RecordInput:
    backup_id: str
    created_at: datetime
    workflow_id: str
    dumps: list[catalog.DumpEntry]


@dataclass
class PruneInput:
    keep_days: int | None = None  # None: settings.backup_retention_days


@dataclass
class PruneResult:
    deleted: list[str]
    kept: list[str]


@dataclass
class RestoreRequest:
    backup_id: str
    database: str = PLATFORM_DATABASE
    force: bool = False


@dataclass
class RestorePlan:
    """What a restore reads and what it overwrites."""

    backup_id: str
    database: str
    target: str  # host/database, no credentials
    dump: catalog.DumpEntry
    overwrites: list[pgtools.TableRows] = field(default_factory=list)


@dataclass
class RestoreResult:
    backup_id: str
    database: str
    target: str
    bytes_restored: int


def target_label(dsn: str) -> str:
    """``host/database`` of a DSN, for messages (no user, no password)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'local socket'}{parts.path}"


@asynccontextmanager
async def heartbeating(every: float = 10.0) -> AsyncIterator[None]:
    """Heartbeat in the background while a long step with no progress of its own runs."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class BackupActivities:
    """Activities of the backup and restore workflows; every one is safe to run twice."""

    def __init__(self, *, settings: Settings, pool: asyncpg.Pool, store: BackupStore | None = None) -> None:
        self._settings = settings
        self._pool = pool
        self._store = store

    async def _open_store(self) -> BackupStore:
        if self._store is None:
            self._store = await open_store(self._settings)
        return self._store

    def _dsn(self, database: str) -> str:
        if database == PLATFORM_DATABASE:
            return self._settings.postgres_dsn.get_secret_value()
        extra = self._settings.backup_extra_dsns.get(database)
        if extra is None:
            known = [PLATFORM_DATABASE, *sorted(self._settings.backup_extra_dsns)]
            raise ApplicationError(f"unknown database {database!r}; configured: {', '.join(known)}",
                                   type="UnknownDatabase", non_retryable=True)
        return extra.get_secret_value()

    @activity.defn
    async def backup_targets(self) -> BackupTargets:
        """The databases a backup dumps: the platform's, then ``settings.backup_extra_dsns``."""
        return BackupTargets([PLATFORM_DATABASE, *sorted(self._settings.backup_extra_dsns)])

    @activity.defn
    async def dump_database(self, params: DumpInput) -> catalog.DumpEntry:
        """Stream ``pg_dump -Fc`` of one database into the store, heartbeating the bytes written."""
        store = await self._open_store()
        key = catalog.dump_key(params.backup_id, params.database)
        chunks = pgtools.pg_dump_stream(self._dsn(params.database), on_progress=activity.heartbeat)
        metadata = {"backup-id": params.backup_id, "database": params.database, "format": "pg_dump-custom",
                    "created-at": params.created_at.isoformat()}
        try:
            stored = await store.put_stream(key, chunks, metadata)
        except pgtools.PgToolError as err:
            raise ApplicationError(str(err), type="DumpFailed") from err
        assert stored.sha256 is not None
        activity.logger.info("dumped %s to %s: %d bytes", params.database, key, stored.size)
        return catalog.DumpEntry(database=params.database, key=key, size=stored.size, sha256=stored.sha256)

    @activity.defn
    async def record_backup(self, params: RecordInput) -> catalog.Manifest:
        """Write the manifest (which completes the backup) and the backups table rows."""
        store = await self._open_store()
        manifest = catalog.Manifest(backup_id=params.backup_id, created_at=params.created_at,
                                    finished_at=datetime.now(UTC), store=store.name,
                                    workflow_id=params.workflow_id, dumps=params.dumps)
        existing = await catalog.read_manifest(store, params.backup_id)
        if existing is not None and existing.dumps == manifest.dumps:
            manifest = existing  # a repeat: keep the first finish time
        else:
            await catalog.write_manifest(store, manifest)
        await record_rows(self._pool, manifest)
        return manifest

    @activity.defn
    async def prune_backups(self, params: PruneInput) -> PruneResult:
        """Keep the newest ``keep_days`` days of backups; delete the rest and incomplete leftovers."""
        store = await self._open_store()
        keep_days = params.keep_days or self._settings.backup_retention_days
        complete, incomplete = await catalog.backup_ids(store)
        doomed = catalog.to_prune(complete, incomplete, keep_days)
        for backup_id in doomed:
            await catalog.delete_backup(store, backup_id)
            activity.heartbeat(backup_id)
        if doomed:
            await backups_store.mark_backups_deleted(self._pool, doomed)
        return PruneResult(deleted=doomed, kept=[b for b in complete if b not in doomed])

    @activity.defn
    async def inspect_restore(self, params: RestoreRequest) -> RestorePlan:
        """Find the backup's dump of ``database`` and list what the target holds now.

        Raises:
            ApplicationError: (non-retryable) no such backup or no dump of that database in it.
        """
        store = await self._open_store()
        manifest = await catalog.read_manifest(store, params.backup_id)
        if manifest is None:
            raise ApplicationError(f"no complete backup {params.backup_id} in the {store.name} store",
                                   type="BackupNotFound", non_retryable=True)
        dump = manifest.dump(params.database)
        if dump is None:
            raise ApplicationError(f"backup {params.backup_id} has no dump of {params.database!r}",
                                   type="BackupNotFound", non_retryable=True)
        dsn = self._dsn(params.database)
        return RestorePlan(backup_id=params.backup_id, database=params.database, target=target_label(dsn),
                           dump=dump, overwrites=await pgtools.non_empty_tables(dsn))

    @activity.defn
    async def restore_database(self, plan: RestorePlan) -> RestoreResult:
        """Download the dump, check its size and sha256, then pg_restore it into the target in one transaction.

        Raises:
            ApplicationError: (non-retryable, type ``BackupCorrupted``) the object does not match the manifest.
        """
        store = await self._open_store()
        async with heartbeating():
            try:
                size = await restoring.restore_dump(store, plan.backup_id, plan.dump, self._dsn(plan.database))
            except restoring.BackupCorruptedError as err:
                raise ApplicationError(str(err), type="BackupCorrupted", non_retryable=True) from err
            except pgtools.PgToolError as err:
                raise ApplicationError(str(err), type="RestoreFailed", non_retryable=True) from err
        if plan.database == PLATFORM_DATABASE:
            # The restored table is as old as the backup: put back the rows of every backup the store holds.
            for manifest in await catalog.list_manifests(store):
                await record_rows(self._pool, manifest)
        return RestoreResult(plan.backup_id, plan.database, plan.target, size)


async def record_rows(pool: asyncpg.Pool, manifest: catalog.Manifest) -> None:
    """Upsert the backups table rows of ``manifest`` (skipped when the table does not exist yet)."""
    await backups_store.record_backup_dumps(pool, [
        backups_store.BackupDumpRow(backup_id=manifest.backup_id, database=d.database, store=manifest.store,
                                    object_key=d.key, size_bytes=d.size, sha256=d.sha256,
                                    created_at=manifest.created_at, finished_at=manifest.finished_at,
                                    workflow_id=manifest.workflow_id)
        for d in manifest.dumps])
