"""Server-level statements for the local launcher and the restore tooling: databases, settings, what a database
holds. They run on any database of a server (often not the platform's), on a connection the caller opened."""

from __future__ import annotations

import asyncpg


async def create_database_if_missing(conn: asyncpg.Connection, name: str) -> bool:
    """Create the database ``name`` on ``conn``'s server unless it exists.

    Returns:
        Whether it was created (False: it already existed).
    """
    if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        return False
    await conn.execute(f'CREATE DATABASE "{name}"')
    return True


async def table_exists(conn: asyncpg.Connection, table: str) -> bool:
    """Whether ``table`` (a name as the search path resolves it, optionally schema-qualified) exists."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def max_connections(conn: asyncpg.Connection) -> int:
    """The server's ``max_connections`` now in effect."""
    return int(await conn.fetchval("SHOW max_connections"))


async def set_max_connections(conn: asyncpg.Connection, value: int) -> None:
    """Write ``max_connections`` to the server's configuration (``ALTER SYSTEM``); it applies after a restart."""
    await conn.execute(f"ALTER SYSTEM SET max_connections = {int(value)}")


async def tables_with_rows(conn: asyncpg.Connection, *, cap: int, skip: frozenset[str] = frozenset()
                           ) -> list[tuple[str, int]]:
    """The user tables of ``conn``'s database that hold rows, sorted by name, with their rows counted up to ``cap``.

    Args:
        conn: A connection to the database to look at.
        cap: Stop counting a table's rows here.
        skip: Quoted ``schema.table`` names not to count (bookkeeping tables).

    Returns:
        ``(schema.table, rows)`` of every non-empty table, names quoted as identifiers where needed.
    """
    tables = await conn.fetch(
        """SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name
             FROM information_schema.tables
            WHERE table_type = 'BASE TABLE'
              AND table_schema NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1""")
    found = []
    for record in tables:
        name = record["name"]
        if name in skip:
            continue
        rows = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT {int(cap)}) t")
        if rows:
            found.append((name, int(rows)))
    return found
