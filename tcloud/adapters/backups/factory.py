"""The backup store the settings ask for."""

from __future__ import annotations

from tcloud.adapters.backups.filesystem import FilesystemStore
from tcloud.adapters.backups.oci_store import OciObjectStore
from tcloud.adapters.backups.store import BackupStore
from tcloud.settings import Settings


async def open_store(settings: Settings) -> BackupStore:
    """``settings.backup_store``: the filesystem at ``settings.backup_path`` or OCI Object Storage."""
    if settings.backup_store == "oci":
        return await OciObjectStore.from_settings(settings)
    return FilesystemStore(settings.backup_path)
