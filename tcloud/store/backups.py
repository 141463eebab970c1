"""The ``backups`` table: one row per (backup, database) dump the store holds, or held before pruning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

_SELECT = """SELECT backup_id, database, store, object_key, size_bytes, sha256, created_at, finished_at,
                    workflow_id, deleted_at FROM backups"""


@dataclass(frozen=True)
class BackupDumpRow:
    """One dump of a backup, as the backups table records it."""

    backup_id: str
    database: str
    store: str
    object_key: str
    size_bytes: int
    sha256: str
    created_at: datetime
    finished_at: datetime
    workflow_id: str


async def record_backup_dumps(conn: asyncpg.Pool | asyncpg.Connection, dumps: list[BackupDumpRow]) -> bool:
    """Insert or refresh the rows of ``dumps`` (un-deleting pruned ones), unless the backups table does not exist.

    Returns:
        Whether the rows were written (False: no backups table yet, e.g. a restored database predating it).
    """
    if not await conn.fetchval("SELECT to_regclass('public.backups') IS NOT NULL"):
        return False
    await conn.executemany(
        """INSERT INTO backups (backup_id, database, store, object_key, size_bytes, sha256, created_at,
                                finished_at, workflow_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (backup_id, database) DO UPDATE
              SET store = EXCLUDED.store, object_key = EXCLUDED.object_key, size_bytes = EXCLUDED.size_bytes,
                  sha256 = EXCLUDED.sha256, finished_at = EXCLUDED.finished_at, deleted_at = NULL""",
        [(d.backup_id, d.database, d.store, d.object_key, d.size_bytes, d.sha256, d.created_at, d.finished_at,
          d.workflow_id) for d in dumps],
    )
    return True


async def mark_backups_deleted(conn: asyncpg.Pool | asyncpg.Connection, backup_ids: list[str]) -> None:
    """Stamp ``deleted_at`` on the rows of ``backup_ids`` not already marked."""
    await conn.execute(
        "UPDATE backups SET deleted_at = now() WHERE backup_id = ANY($1) AND deleted_at IS NULL", backup_ids)


async def list_backup_dumps(conn: asyncpg.Pool | asyncpg.Connection, *,
                            include_deleted: bool) -> list[asyncpg.Record]:
    """Every recorded dump, newest backup first then by database; pruned ones only with ``include_deleted``."""
    where = "" if include_deleted else " WHERE deleted_at IS NULL"
    return list(await conn.fetch(f"{_SELECT}{where} ORDER BY backup_id DESC, database"))


async def backup_dumps(conn: asyncpg.Pool | asyncpg.Connection, backup_id: str) -> list[asyncpg.Record]:
    """The recorded dumps of one backup, by database (empty: no such backup)."""
    return list(await conn.fetch(f"{_SELECT} WHERE backup_id = $1 ORDER BY database", backup_id))
