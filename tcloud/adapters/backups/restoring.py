"""Download a dump, check it against its manifest entry, and pg_restore it: the core of every restore.

The restore activity runs it under Temporal; ``deploy.sh restore --offline`` runs it directly (to restore
Temporal's own database, or when Temporal itself is gone).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from tcloud.adapters.backups import pgtools
from tcloud.adapters.backups.catalog import DumpEntry
from tcloud.adapters.backups.store import BackupStore, Digest


class BackupCorruptedError(Exception):
    """The stored object does not match what the backup recorded for it."""


async def download(store: BackupStore, key: str, local: Path, *,
                   on_progress: Callable[[int], None] | None = None) -> Digest:
    """Copy ``key`` to the file ``local`` chunk by chunk, hashing as it goes."""
    digest = Digest()
    out = await asyncio.to_thread(open, local, "wb")
    try:
        async for chunk in store.get_stream(key):
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
            if on_progress is not None:
                on_progress(digest.size)
    finally:
        out.close()
    return digest


async def verify(store: BackupStore, backup_id: str, dump: DumpEntry, digest: Digest) -> None:
    """Compare what was downloaded with the manifest (and the object's own sha256 metadata, when it has one).

    Raises:
        BackupCorruptedError: size or sha256 differ.
    """
    head = await store.head(dump.key)
    expected = {dump.sha256}
    if head is not None and head.sha256:
        expected.add(head.sha256)
    if expected != {digest.hexdigest} or digest.size != dump.size:
        raise BackupCorruptedError(
            f"backup {backup_id} is corrupted: {dump.key} has {digest.size} bytes, sha256 {digest.hexdigest}; "
            f"the manifest says {dump.size} bytes, sha256 {dump.sha256}. Refusing to restore it; pick another "
            "backup.")


async def restore_dump(store: BackupStore, backup_id: str, dump: DumpEntry, dsn: str, *,
                       on_progress: Callable[[int], None] | None = None) -> int:
    """Download, verify, then restore ``dump`` into ``dsn`` in one transaction.

    Returns:
        The bytes restored.

    Raises:
        BackupCorruptedError: the object does not match its manifest entry (nothing was restored).
        pgtools.PgToolError: pg_restore failed (its single transaction left the target as it was).
    """
    with tempfile.TemporaryDirectory(prefix="tcloud-restore-") as scratch:
        local = Path(scratch) / "dump.pgdump"
        digest = await download(store, dump.key, local, on_progress=on_progress)
        await verify(store, backup_id, dump, digest)
        await pgtools.pg_restore_file(dsn, local)
    return digest.size
