"""Helpers for the backup tests: fill a database with varied rows, checksum every table, wipe it."""

from __future__ import annotations

import asyncpg

FILL_SQL = """
CREATE TABLE IF NOT EXISTS bk_items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    amount numeric(14, 4) NOT NULL,
    payload jsonb,
    created timestamptz NOT NULL,
    blob bytea
);
CREATE TABLE IF NOT EXISTS bk_tags (
    item_id bigint REFERENCES bk_items (id),
    tag text NOT NULL,
    PRIMARY KEY (item_id, tag)
);
INSERT INTO bk_items (name, amount, payload, created, blob)
SELECT 'item ' || g || ' ' || md5(g::text || $1::text),
       (g * 1.2345)::numeric(14, 4),
       jsonb_build_object('g', g, 'seed', $1::text, 'nested', jsonb_build_array(g, g * 2)),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '37 seconds',
       decode(md5(g::text), 'hex')
  FROM generate_series(1, $2::int) g;
INSERT INTO bk_tags (item_id, tag) SELECT id, 'tag' || (id % 7) FROM bk_items WHERE id % 3 = 0
    ON CONFLICT DO NOTHING;
"""


async def fill(conn: asyncpg.Connection | asyncpg.Pool, rows: int = 3000, seed: str = "s") -> None:
    """Create the two test tables (once) and add ``rows`` items plus tags."""
    statements = [s for s in FILL_SQL.split(";\n") if s.strip()]
    for sql in statements:
        if "$1" in sql or "$2" in sql:
            args: list[object] = [seed, rows] if "$2" in sql else [seed]
            await conn.execute(sql, *args)
        else:
            await conn.execute(sql)


async def table_checksums(dsn: str, *, exclude: frozenset[str] = frozenset()) -> dict[str, tuple[int, str]]:
    """``{schema.table: (rows, md5 of all rows in a fixed order)}`` for every user table."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            """SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name
                 FROM information_schema.tables
                WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')""")
        out: dict[str, tuple[int, str]] = {}
        for t in tables:
            if t["name"] in exclude:
                continue
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS sum "
                f"FROM {t['name']} x")
            out[t["name"]] = (row["n"], row["sum"])
        return out
    finally:
        await conn.close()


async def wipe(dsn: str) -> None:
    """Drop everything in the public schema, as a lost database would look once re-created."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
