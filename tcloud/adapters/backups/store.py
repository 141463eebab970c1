"""The one small interface every backup store implements, and what the stores share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# Object keys are relative, slash-separated, made of plain characters: no "..", no leading "/".
_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

CHUNK_BYTES = 1024 * 1024


class ObjectNotFoundError(KeyError):
    """The store has no object under that key."""


@dataclass
class StoredObject:
    """An object as the store recorded it.

    Attributes:
        key: The object's key.
        size: Its length in bytes.
        sha256: Hex digest of its content, when the store recorded one (always after ``put_stream``).
        metadata: User metadata (``opc-meta-*`` on OCI, without the prefix).
    """

    key: str
    size: int
    sha256: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class BackupStore(Protocol):
    """Where backups live. Every method is safe to repeat."""

    name: str

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], metadata: dict[str, str]) -> StoredObject:
        """Write ``chunks`` under ``key`` without holding them all in memory; size and sha256 computed on the fly."""
        ...

    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str]) -> StoredObject:
        """Write a small object in one request."""
        ...

    def get_stream(self, key: str) -> AsyncIterator[bytes]:
        """The object's content in chunks. Raises ``ObjectNotFoundError``."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """A small object's whole content. Raises ``ObjectNotFoundError``."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """The object's size and metadata, or None when absent."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent is fine."""
        ...


class Digest:
    """Size and sha256 of a stream, updated chunk by chunk."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe object key.

    Raises:
        ValueError: On empty keys, absolute paths, ``..`` or unusual characters.
    """
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key
