"""How backups are laid out in a store, their manifests, and which ones retention keeps.

A backup ``<id>`` (``YYYYMMDDTHHMMSSZ``, UTC) is ``backups/<id>/<database>.pgdump`` per database and
``backups/<id>/manifest.json``, written last: a backup without a manifest is incomplete and never restored.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel

from tcloud.adapters.backups.store import BackupStore, ObjectNotFoundError

PREFIX = "backups/"
MANIFEST = "manifest.json"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
_ID = re.compile(r"^\d{8}T\d{6}Z$")


class DumpEntry(BaseModel):
    """One database's dump inside a backup."""

    database: str
    key: str
    size: int
    sha256: str


class Manifest(BaseModel):
    """What a complete backup holds; the store's copy is the source of truth for restore and retention."""

    backup_id: str
    created_at: datetime
    finished_at: datetime
    store: str
    workflow_id: str
    dumps: list[DumpEntry]

    def dump(self, database: str) -> DumpEntry | None:
        return next((d for d in self.dumps if d.database == database), None)


def is_backup_id(value: str) -> bool:
    return bool(_ID.match(value))


def backup_id_at(moment: datetime) -> str:
    return moment.strftime(ID_FORMAT)


def dump_key(backup_id: str, database: str) -> str:
    return f"{PREFIX}{backup_id}/{database}.pgdump"


def manifest_key(backup_id: str) -> str:
    return f"{PREFIX}{backup_id}/{MANIFEST}"


async def write_manifest(store: BackupStore, manifest: Manifest) -> None:
    await store.put_bytes(manifest_key(manifest.backup_id), manifest.model_dump_json(indent=2).encode(),
                          {"backup-id": manifest.backup_id})


async def read_manifest(store: BackupStore, backup_id: str) -> Manifest | None:
    try:
        return Manifest.model_validate_json(await store.get_bytes(manifest_key(backup_id)))
    except ObjectNotFoundError:
        return None


async def backup_ids(store: BackupStore) -> tuple[list[str], list[str]]:
    """Ids of complete backups and of incomplete ones (objects but no manifest), each oldest first."""
    complete: set[str] = set()
    seen: set[str] = set()
    for key in await store.list(PREFIX):
        backup_id, _, rest = key[len(PREFIX):].partition("/")
        if not is_backup_id(backup_id):
            continue
        seen.add(backup_id)
        if rest == MANIFEST:
            complete.add(backup_id)
    return sorted(complete), sorted(seen - complete)


async def list_manifests(store: BackupStore) -> list[Manifest]:
    """Every complete backup's manifest, newest first."""
    complete, _ = await backup_ids(store)
    found = [await read_manifest(store, backup_id) for backup_id in reversed(complete)]
    return [m for m in found if m is not None]


def to_prune(complete: list[str], incomplete: list[str], keep_days: int) -> list[str]:
    """Backups retention removes: keep those of the newest ``keep_days`` days that have a backup.

    Several backups on one day (a manual one beside the daily) count as that day. Incomplete leftovers older
    than the oldest kept backup go too; newer ones may still be in progress and stay.
    """
    days = sorted({backup_id[:8] for backup_id in complete}, reverse=True)
    kept_days = set(days[: max(keep_days, 1)])
    doomed = [b for b in complete if b[:8] not in kept_days]
    kept = [b for b in complete if b[:8] in kept_days]
    if kept:
        doomed += [b for b in incomplete if b < kept[0]]
    return sorted(doomed)


async def delete_backup(store: BackupStore, backup_id: str) -> None:
    """Delete a backup's objects, its manifest last (so a repeat still finds it)."""
    keys = await store.list(f"{PREFIX}{backup_id}/")
    manifest = manifest_key(backup_id)
    for key in keys:
        if key != manifest:
            await store.delete(key)
    await store.delete(manifest)
