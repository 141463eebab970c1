"""How a store function gets one connection or a transaction from what its caller passed: a pool or a connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


@asynccontextmanager
async def connection(conn: Conn) -> AsyncIterator[asyncpg.Connection]:
    """One connection: ``conn`` itself, or one acquired from it for the block when it is a pool."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            yield acquired
    else:
        yield conn


@asynccontextmanager
async def transaction(conn: Conn) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on ``conn``, or on a connection acquired from it for the block when it is a pool."""
    async with connection(conn) as one, one.transaction():
        yield one
