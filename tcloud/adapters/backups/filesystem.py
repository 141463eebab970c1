"""The local default store: one file per object under ``settings.backup_path``, metadata beside it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from tcloud.adapters.backups.store import CHUNK_BYTES, Digest, ObjectNotFoundError, StoredObject, check_key

META_SUFFIX = ".meta.json"
PARTIAL_SUFFIX = ".partial"


class FilesystemStore:
    """Objects are files; ``<key>.meta.json`` carries size, sha256 and metadata. Writes are atomic (rename)."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], metadata: dict[str, str]) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        digest = Digest()
        out = await asyncio.to_thread(open, partial, "wb")
        try:
            async for chunk in chunks:
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(_flush, out)
        finally:
            out.close()
        stored = StoredObject(key, digest.size, digest.hexdigest, dict(metadata))
        os.replace(partial, path)
        _write_meta(path, stored)
        return stored

    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str]) -> StoredObject:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), metadata)

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(key)
        f = await asyncio.to_thread(open, path, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
                yield chunk
        finally:
            f.close()

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(key)
        return await asyncio.to_thread(path.read_bytes)

    async def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta_file = path.with_name(path.name + META_SUFFIX)
        stored = StoredObject(key, path.stat().st_size)
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            stored.sha256 = meta.get("sha256")
            stored.metadata = meta.get("metadata", {})
        return stored

    async def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            name = path.name
            if not path.is_file() or name.endswith(META_SUFFIX) or name.endswith(PARTIAL_SUFFIX):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        path.with_name(path.name + META_SUFFIX).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        # Drop directories left empty, up to the root.
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _write_meta(path: Path, stored: StoredObject) -> None:
    meta_file = path.with_name(path.name + META_SUFFIX)
    tmp = meta_file.with_name(meta_file.name + PARTIAL_SUFFIX)
    tmp.write_text(json.dumps({"size": stored.size, "sha256": stored.sha256, "metadata": stored.metadata}))
    os.replace(tmp, meta_file)
