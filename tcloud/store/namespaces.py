"""Tenant namespaces: ``namespaces`` and ``namespace_ownership`` (and the ``async_operations`` of their changes).

Each change the API starts is one function and one transaction: the namespace row locked, moved to the
operation's state and the operation recorded together (:func:`reserve_namespace`, :func:`begin_namespace_update`,
:func:`begin_namespace_deletion`); when the workflow then cannot start, a ``cancel``/``fail`` function moves the
row back. A namespace's ownership row opens and closes in the same transaction as its state
(:func:`activate_namespace_and_open_ownership`, :func:`delete_namespace_and_close_ownership`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from tcloud.domain.plans import NAMESPACE_QUOTA
from tcloud.domain.states import NamespaceState
from tcloud.store._connections import transaction
from tcloud.store.operations import record_fulfilled_operation, record_operation

LIVE_STATES = ("provisioning", "active", "updating", "deleting")  # states that count against the quota

T = TypeVar("T")


class NamespaceExists(Exception):
    """The namespace is already live."""


class AccountNotWritable(Exception):
    """The account is not active (suspended, closing or closed): it cannot create namespaces."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


class NamespaceQuotaReached(Exception):
    """The account holds as many live namespaces as its plan allows."""

    def __init__(self, plan: str, quota: int):
        super().__init__(f"plan {plan} allows {quota} namespaces")
        self.plan = plan
        self.quota = quota


@dataclass(frozen=True)
class NamespaceChange(Generic[T]):
    """A change begun on a namespace."""

    previous: asyncpg.Record  # the row as it was when locked, before the change
    resource_version: int  # the namespace's resource version after the change
    checked: T  # what the caller's ``check`` returned



async def _lock_owned(conn: asyncpg.Connection, namespace: str, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM namespaces WHERE namespace = $1 AND account_id = $2 AND state <> 'deleted' FOR UPDATE",
        namespace, account_id,
    )


# The API's reads


async def find_owned_namespace(conn: asyncpg.Pool | asyncpg.Connection, namespace: str,
                               account_id: str) -> asyncpg.Record | None:
    """The namespace's row if ``account_id`` owns it and it is not deleted, else None."""
    return await conn.fetchrow(
        "SELECT * FROM namespaces WHERE namespace = $1 AND account_id = $2 AND state <> 'deleted'",
        namespace, account_id,
    )


async def list_account_namespaces(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *, after: str = "",
                                  name: str = "", limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` of the account's namespaces not deleted, in namespace order after ``after``.

    Args:
        conn: a pool or a connection.
        account_id: the owner.
        after: only namespaces that sort after this one ('' for the first page).
        name: only the namespace with this name ('' for any).
        limit: at most this many rows.
    """
    return list(await conn.fetch(
        """SELECT * FROM namespaces WHERE account_id = $1 AND state <> 'deleted'
              AND namespace > $2 AND ($3 = '' OR name = $3)
            ORDER BY namespace LIMIT $4""",
        account_id, after, name, limit))


# Changes the API starts, and their undoing when the workflow cannot start


async def reserve_namespace(conn: asyncpg.Pool | asyncpg.Connection, *, namespace: str, name: str,
                            account_id: str, retention_days: int, operation_id: str, workflow_id: str,
                            tags: Mapping[str, str] | None = None,
                            search_attributes: Mapping[str, str] | None = None) -> str:
    """Reserve the namespace for the account ('provisioning') and record its CreateNamespace operation.

    One transaction, under a lock on the account row: the name is free (or held only by a deleted or failed
    namespace, whose row is reused) and the account is within its plan's namespace quota.

    Returns:
        The account's email.

    Raises:
        AccountNotWritable: when the account is not active.
        NamespaceExists: when the namespace is live.
        NamespaceQuotaReached: when the account holds its plan's quota of live namespaces.
        OperationIdTaken: when ``operation_id`` is already used.
    """
    async with transaction(conn) as tx:
        account = await tx.fetchrow("SELECT plan, email, status FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if account["status"] != "active":  # checked under the lock a closure also takes
            raise AccountNotWritable(account["status"])
        existing = await tx.fetchval("SELECT state FROM namespaces WHERE namespace = $1 FOR UPDATE", namespace)
        if existing in LIVE_STATES:
            raise NamespaceExists(namespace)
        held = await tx.fetchval(
            "SELECT count(*) FROM namespaces WHERE account_id = $1 AND state = ANY($2::text[])",
            account_id, list(LIVE_STATES))
        quota = NAMESPACE_QUOTA.get(account["plan"], 0)
        if held >= quota:
            raise NamespaceQuotaReached(account["plan"], quota)
        await tx.execute(
            """INSERT INTO namespaces (namespace, name, account_id, state, retention_days, async_operation_id, tags,
                                       search_attributes)
               VALUES ($1, $2, $3, 'provisioning', $4, $5, $6::jsonb, $7::jsonb)
               ON CONFLICT (namespace) DO UPDATE SET
                   state = 'provisioning', retention_days = $4, async_operation_id = $5, failure_reason = NULL,
                   created_at = now(), updated_at = now(), deleted_at = NULL, tags = $6::jsonb,
                   search_attributes = $7::jsonb, resource_version = namespaces.resource_version + 1""",
            namespace, name, account_id, retention_days, operation_id, json.dumps(dict(tags or {})),
            json.dumps(dict(search_attributes or {})))
        await record_operation(tx, operation_id=operation_id, account_id=account_id,
                               operation_type="CreateNamespace", resource=namespace, workflow_id=workflow_id)
    return str(account["email"])


async def fail_unstarted_namespace_creation(conn: asyncpg.Pool | asyncpg.Connection, namespace: str) -> None:
    """Mark a reserved namespace failed because its creation workflow could not start."""
    await conn.execute(
        "UPDATE namespaces SET state = 'failed', failure_reason = 'the workflow could not start' "
        "WHERE namespace = $1 AND state = 'provisioning'", namespace)


async def begin_namespace_update(conn: asyncpg.Pool | asyncpg.Connection, *, namespace: str, account_id: str,
                                 operation_id: str, workflow_id: Callable[[int], str],
                                 check: Callable[[asyncpg.Record], T], operation_type: str = "UpdateNamespace",
                                 bump_version: bool = True) -> NamespaceChange[T] | None:
    """Lock the account's namespace, move it to 'updating' at the next resource version, record the operation.

    One transaction. ``check`` runs on the locked row before anything changes: whatever it raises ends the
    transaction with nothing changed, and what it returns comes back in :attr:`NamespaceChange.checked`.

    Args:
        conn: a pool or a connection.
        namespace: the namespace.
        account_id: its owner: another account's namespace, or a deleted one, is not found.
        operation_id: the UpdateNamespace operation to record.
        workflow_id: the id of the operation's workflow, from the new resource version.
        check: refuses the change by raising.
        operation_type: the operation recorded (UpdateNamespace, or RenameCustomSearchAttribute).
        bump_version: False keeps the resource version (a rename: Temporal's Terraform provider updates the
            namespace right after one with the version it read before).

    Returns:
        The change, or None when the account has no such namespace.

    Raises:
        OperationIdTaken: when ``operation_id`` is already used.
    """
    return await _begin_change(conn, namespace=namespace, account_id=account_id, operation_id=operation_id,
                               operation_type=operation_type, state="updating", workflow_id=workflow_id,
                               check=check, bump_version=bump_version)


async def cancel_unstarted_namespace_update(conn: asyncpg.Pool | asyncpg.Connection, namespace: str) -> None:
    """Put an 'updating' namespace back to 'active' because its update workflow could not start."""
    await conn.execute("UPDATE namespaces SET state = 'active' WHERE namespace = $1 AND state = 'updating'",
                       namespace)


async def begin_namespace_deletion(conn: asyncpg.Pool | asyncpg.Connection, *, namespace: str, account_id: str,
                                   operation_id: str, workflow_id: str,
                                   check: Callable[[asyncpg.Record], T]) -> NamespaceChange[T] | None:
    """Lock the account's namespace, move it to 'deleting' at the next resource version, record the operation.

    One transaction. ``check`` runs on the locked row before anything changes: whatever it raises ends the
    transaction with nothing changed, and what it returns comes back in :attr:`NamespaceChange.checked`.

    Returns:
        The change (``previous['state']`` is the state to return to if the workflow cannot start), or None when
        the account has no such namespace.

    Raises:
        OperationIdTaken: when ``operation_id`` is already used.
    """
    return await _begin_change(conn, namespace=namespace, account_id=account_id, operation_id=operation_id,
                               operation_type="DeleteNamespace", state="deleting",
                               workflow_id=lambda _version: workflow_id, check=check)


async def _begin_change(conn: asyncpg.Pool | asyncpg.Connection, *, namespace: str, account_id: str,
                        operation_id: str, operation_type: str, state: NamespaceState,
                        workflow_id: Callable[[int], str], check: Callable[[asyncpg.Record], T],
                        bump_version: bool = True) -> NamespaceChange[T] | None:
    """The transaction of an update or a deletion: lock, check, move to ``state`` at the next version, record."""
    async with transaction(conn) as tx:
        row = await _lock_owned(tx, namespace, account_id)
        if row is None:
            return None
        checked = check(row)
        version = await tx.fetchval(
            """UPDATE namespaces SET state = $3, resource_version = resource_version + $4::int,
                      async_operation_id = $2, updated_at = now()
                WHERE namespace = $1 RETURNING resource_version""", namespace, operation_id, state,
            1 if bump_version else 0)
        await record_operation(tx, operation_id=operation_id, account_id=account_id, operation_type=operation_type,
                               resource=namespace, workflow_id=workflow_id(version))
    return NamespaceChange(row, version, checked)


async def cancel_unstarted_namespace_deletion(conn: asyncpg.Pool | asyncpg.Connection, namespace: str,
                                              previous_state: str) -> None:
    """Put a 'deleting' namespace back to ``previous_state`` because its deletion workflow could not start."""
    await conn.execute("UPDATE namespaces SET state = $2 WHERE namespace = $1 AND state = 'deleting'",
                       namespace, previous_state)


# What the workflows' activities record (each moves a row forward only from the state it expects)


async def activate_namespace_and_open_ownership(conn: asyncpg.Pool | asyncpg.Connection, namespace: str,
                                                account_id: str) -> None:
    """Record a provisioning namespace active and open its ownership (from the moment it was reserved)."""
    async with transaction(conn) as tx:
        await tx.execute(
            """UPDATE namespaces SET state = 'active', failure_reason = NULL, updated_at = now()
                WHERE namespace = $1 AND state = 'provisioning'""",
            namespace,
        )
        await tx.execute(
            """INSERT INTO namespace_ownership (namespace, account_id, valid_from)
               SELECT n.namespace, n.account_id, n.created_at FROM namespaces n
                WHERE n.namespace = $1 AND n.account_id = $2 AND n.state = 'active'
                  AND NOT EXISTS (SELECT 1 FROM namespace_ownership o
                                   WHERE o.namespace = n.namespace AND o.valid_to IS NULL)
               ON CONFLICT DO NOTHING""",
            namespace, account_id,
        )


async def record_namespace_updated(conn: asyncpg.Pool | asyncpg.Connection, namespace: str,
                                   retention_days: int, search_attributes: Mapping[str, str] | None = None) -> None:
    """Record an updating namespace active with its new retention (and search attributes, unless None)."""
    await conn.execute(
        """UPDATE namespaces SET state = 'active', retention_days = $2, failure_reason = NULL, updated_at = now(),
                  search_attributes = coalesce($3::jsonb, search_attributes)
            WHERE namespace = $1 AND state = 'updating'""",
        namespace, retention_days, None if search_attributes is None else json.dumps(dict(search_attributes)),
    )


async def change_namespace_tags(conn: asyncpg.Pool | asyncpg.Connection, *, namespace: str, account_id: str,
                                operation_id: str, change: Callable[[asyncpg.Record, dict[str, str]], dict[str, str]]
                                ) -> asyncpg.Record | None:
    """Set the account's namespace's tags to ``change(row, current tags)`` and record the UpdateNamespaceTags
    operation fulfilled, in one transaction (tags live here only: no workflow). The resource version stays: tags are
    not part of the spec that UpdateNamespace's resource version guards (the Terraform provider manages them as a
    separate resource, side by side with updates of the namespace).

    ``change`` runs on the locked row: whatever it raises ends the transaction with nothing changed.

    Returns:
        The row after the change, or None when the account has no such namespace.

    Raises:
        OperationIdTaken: when ``operation_id`` is already used.
    """
    async with transaction(conn) as tx:
        row = await _lock_owned(tx, namespace, account_id)
        if row is None:
            return None
        tags = change(row, json.loads(row["tags"]))
        await record_fulfilled_operation(tx, operation_id=operation_id, account_id=account_id,
                                         operation_type="UpdateNamespaceTags", resource=namespace)
        return await tx.fetchrow(
            "UPDATE namespaces SET tags = $2::jsonb, updated_at = now() WHERE namespace = $1 RETURNING *",
            namespace, json.dumps(tags))


async def delete_namespace_and_close_ownership(conn: asyncpg.Pool | asyncpg.Connection, namespace: str) -> None:
    """Record a deleting namespace deleted and close its open ownership; usage history stays."""
    async with transaction(conn) as tx:
        await tx.execute(
            """UPDATE namespaces SET state = 'deleted', deleted_at = now(), updated_at = now()
                WHERE namespace = $1 AND state = 'deleting'""",
            namespace,
        )
        await tx.execute(
            """UPDATE namespace_ownership SET valid_to = greatest(now(), valid_from + interval '1 microsecond')
                WHERE namespace = $1 AND valid_to IS NULL""",
            namespace,
        )


async def fail_namespace_operation(conn: asyncpg.Pool | asyncpg.Connection, namespace: str, state: NamespaceState,
                                   reason: str) -> None:
    """Move a namespace whose operation failed to ``state`` ('failed' or 'active'), with the reason."""
    await conn.execute(
        """UPDATE namespaces SET state = $2, failure_reason = $3, updated_at = now()
            WHERE namespace = $1 AND state IN ('provisioning', 'updating', 'deleting')""",
        namespace, state, reason,
    )
