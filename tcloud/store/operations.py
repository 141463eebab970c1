"""Async operations: ``async_operations``, the Cloud Ops ``asyncOperation`` id of a request and its workflow."""

from __future__ import annotations

import asyncpg


class OperationIdTaken(Exception):
    """The requested ``asyncOperationId`` is already used."""

    def __init__(self, operation_id: str):
        super().__init__(f"asyncOperationId {operation_id} is already used")
        self.operation_id = operation_id


async def record_operation(conn: asyncpg.Pool | asyncpg.Connection, *, operation_id: str, account_id: str,
                           operation_type: str, resource: str, workflow_id: str) -> None:
    """Store the operation before its workflow starts.

    Raises:
        OperationIdTaken: when ``operation_id`` is already used.
    """
    inserted = await conn.fetchval(
        """INSERT INTO async_operations (id, account_id, operation_type, resource, workflow_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING id""",
        operation_id, account_id, operation_type, resource, workflow_id,
    )
    if inserted is None:
        raise OperationIdTaken(operation_id)


async def set_operation_run_id(conn: asyncpg.Pool | asyncpg.Connection, operation_id: str,
                               run_id: str | None) -> None:
    """Record the run of the workflow that started for the operation."""
    await conn.execute("UPDATE async_operations SET run_id = $2 WHERE id = $1", operation_id, run_id)


async def find_account_operation(conn: asyncpg.Pool | asyncpg.Connection, operation_id: str,
                                 account_id: str) -> asyncpg.Record | None:
    """The operation's row if it is ``account_id``'s, else None."""
    return await conn.fetchrow(
        "SELECT * FROM async_operations WHERE id = $1 AND account_id = $2", operation_id, account_id)


async def record_fulfilled_operation(conn: asyncpg.Connection, *, operation_id: str, account_id: str,
                                     operation_type: str, resource: str) -> None:
    """Record an operation done in the caller's transaction (no workflow): fulfilled when it commits.

    Raises:
        OperationIdTaken: when ``operation_id`` is already used.
    """
    inserted = await conn.fetchval(
        """INSERT INTO async_operations (id, account_id, operation_type, resource, workflow_id, fulfilled_at)
           VALUES ($1, $2, $3, $4, NULL, now()) ON CONFLICT (id) DO NOTHING RETURNING id""",
        operation_id, account_id, operation_type, resource)
    if inserted is None:
        raise OperationIdTaken(operation_id)
