"""Users and service accounts: ``identities``, and the API keys they own (``api_keys.owner_id``).

An identity change takes effect in the transaction that records its async operation, which is fulfilled at once
(``async_operations.fulfilled_at``, no workflow); each change bumps the identity's ``resource_version``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from tcloud.store._connections import Conn, transaction
from tcloud.store.operations import OperationIdTaken


class IdentityExists(Exception):
    """A user with this email already exists in the account."""


class UnknownNamespaces(Exception):
    """Namespace access names namespaces the account does not have."""

    def __init__(self, names: list[str]):
        super().__init__(", ".join(names))
        self.names = names


class LastAdmin(Exception):
    """The change would leave the account without an admin holding a usable API key."""


@dataclass(frozen=True)
class IdentityChange:
    """What a write to an identity stored: its row after the change."""

    row: asyncpg.Record


async def _record_fulfilled(tx: asyncpg.Connection, *, operation_id: str, account_id: str, operation_type: str,
                            resource: str) -> None:
    inserted = await tx.fetchval(
        """INSERT INTO async_operations (id, account_id, operation_type, resource, workflow_id, fulfilled_at)
           VALUES ($1, $2, $3, $4, NULL, now()) ON CONFLICT (id) DO NOTHING RETURNING id""",
        operation_id, account_id, operation_type, resource)
    if inserted is None:
        raise OperationIdTaken(operation_id)


async def _check_namespaces(tx: asyncpg.Connection, account_id: str, access: Mapping[str, str]) -> None:
    if not access:
        return
    known = {r["namespace"] for r in await tx.fetch(
        """SELECT namespace FROM namespaces WHERE account_id = $1 AND namespace = ANY($2::text[])
              AND state NOT IN ('deleting', 'deleted')""", account_id, list(access))}
    missing = sorted(set(access) - known)
    if missing:
        raise UnknownNamespaces(missing)


async def _admins_keep_a_key(tx: asyncpg.Connection, account_id: str) -> None:
    usable = await tx.fetchval(
        """SELECT count(*) FROM api_keys k JOIN identities i ON i.id = k.owner_id
            WHERE k.account_id = $1 AND k.revoked_at IS NULL AND NOT k.disabled
              AND (k.expires_at IS NULL OR k.expires_at > now())
              AND i.state = 'active' AND i.account_role = 'admin'""", account_id)
    if usable == 0:
        raise LastAdmin()


def _decoded(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    found = dict(row)
    found["namespace_access"] = json.loads(found["namespace_access"]) if isinstance(
        found["namespace_access"], str) else dict(found["namespace_access"])
    return found


async def create_identity(conn: Conn, *, account_id: str, kind: str, name: str, description: str, role: str,
                          namespace_access: Mapping[str, str], operation_id: str,
                          operation_type: str) -> dict[str, Any]:
    """Store a new user or service account and its (fulfilled) operation in one transaction.

    Raises:
        OperationIdTaken: the operation id is used already (nothing stored).
        IdentityExists: a user with this email exists in the account.
        UnknownNamespaces: the access names namespaces the account does not have.
    """
    prefix = "u-" if kind == "user" else "sa-"
    identity_id = prefix + secrets.token_hex(8)
    async with transaction(conn) as tx:
        await _check_namespaces(tx, account_id, namespace_access)
        await _record_fulfilled(tx, operation_id=operation_id, account_id=account_id, operation_type=operation_type,
                                resource=identity_id)
        try:
            row = await tx.fetchrow(
                """INSERT INTO identities (id, account_id, kind, name, description, account_role, namespace_access,
                                           async_operation_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING *""",
                identity_id, account_id, kind, name, description, role, json.dumps(dict(namespace_access)),
                operation_id)
        except asyncpg.UniqueViolationError as err:
            raise IdentityExists(name) from err
    found = _decoded(row)
    assert found is not None
    return found


async def find_identity(conn: Conn, account_id: str, identity_id: str, kind: str) -> dict[str, Any] | None:
    """The account's active identity of this kind, or None."""
    return _decoded(await conn.fetchrow(
        "SELECT * FROM identities WHERE id = $1 AND account_id = $2 AND kind = $3 AND state = 'active'",
        identity_id, account_id, kind))


async def list_identities(conn: Conn, account_id: str, kind: str, *, after: str, limit: int, email: str = "",
                          namespace: str = "") -> list[dict[str, Any]]:
    """The account's active identities of a kind in id order after ``after``, optionally one email or those with
    access to one namespace."""
    rows = await conn.fetch(
        """SELECT * FROM identities
            WHERE account_id = $1 AND kind = $2 AND state = 'active' AND id > $3
              AND ($4 = '' OR lower(name) = lower($4))
              AND ($5 = '' OR namespace_access ? $5)
            ORDER BY id LIMIT $6""",
        account_id, kind, after, email, namespace, limit)
    return [r for r in map(_decoded, rows) if r is not None]


async def account_identities(conn: Conn, account_id: str, *, limit: int) -> list[dict[str, Any]]:
    """Every user and service account of the account with its API key counts, for the operator.

    Deleted identities are included; users come first, oldest first within a kind, at most ``limit`` rows. Each row
    also carries ``active_keys`` (usable keys) and ``disabled_keys``, counting keys neither revoked nor expired.
    """
    rows = await conn.fetch(
        """SELECT i.*,
                  count(k.id) FILTER (WHERE NOT k.disabled) AS active_keys,
                  count(k.id) FILTER (WHERE k.disabled) AS disabled_keys
             FROM identities i
             LEFT JOIN api_keys k ON k.owner_id = i.id AND k.revoked_at IS NULL
                                 AND (k.expires_at IS NULL OR k.expires_at > now())
            WHERE i.account_id = $1
            GROUP BY i.id
            ORDER BY i.kind DESC, i.created_at, i.id
            LIMIT $2""", account_id, limit)
    return [r for r in map(_decoded, rows) if r is not None]


async def change_identity(conn: Conn, *, account_id: str, identity_id: str, kind: str, operation_id: str,
                          operation_type: str,
                          change: Callable[[dict[str, Any]], Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Apply ``change`` to the locked identity and bump its version, recording the fulfilled operation.

    ``change`` gets the current row and answers the new values of ``name``, ``description``, ``account_role`` and
    ``namespace_access`` (any subset), or None to delete the identity (its API keys are revoked with it); it refuses
    by raising. Returns the row after the change, or None when the account has no such identity.

    Raises:
        OperationIdTaken, UnknownNamespaces, IdentityExists, LastAdmin (nothing stored).
    """
    async with transaction(conn) as tx:
        current = _decoded(await tx.fetchrow(
            """SELECT * FROM identities WHERE id = $1 AND account_id = $2 AND kind = $3 AND state = 'active'
                FOR UPDATE""", identity_id, account_id, kind))
        if current is None:
            return None
        values = change(current)
        await _record_fulfilled(tx, operation_id=operation_id, account_id=account_id, operation_type=operation_type,
                                resource=identity_id)
        if values is None:
            row = await tx.fetchrow(
                """UPDATE identities SET state = 'deleted', deleted_at = now(), updated_at = now(),
                          resource_version = resource_version + 1, async_operation_id = $2
                    WHERE id = $1 RETURNING *""", identity_id, operation_id)
            await tx.execute("UPDATE api_keys SET revoked_at = now() WHERE owner_id = $1 AND revoked_at IS NULL",
                             identity_id)
        else:
            merged = {k: values.get(k, current[k]) for k in ("name", "description", "account_role",
                                                              "namespace_access")}
            await _check_namespaces(tx, account_id, {ns: p for ns, p in merged["namespace_access"].items()
                                                     if current["namespace_access"].get(ns) != p})
            try:
                row = await tx.fetchrow(
                    """UPDATE identities SET name = $2, description = $3, account_role = $4,
                              namespace_access = $5::jsonb, updated_at = now(),
                              resource_version = resource_version + 1, async_operation_id = $6
                        WHERE id = $1 RETURNING *""",
                    identity_id, merged["name"], merged["description"], merged["account_role"],
                    json.dumps(dict(merged["namespace_access"])), operation_id)
            except asyncpg.UniqueViolationError as err:
                raise IdentityExists(merged["name"]) from err
        await _admins_keep_a_key(tx, account_id)
    return _decoded(row)


async def grant_namespace_admin(conn: Conn, identity_id: str, namespace: str) -> None:
    """Give the identity ``admin`` permission on a namespace it created (a developer's own namespaces)."""
    await conn.execute(
        """UPDATE identities SET namespace_access = namespace_access || jsonb_build_object($2::text, 'admin'),
                  resource_version = resource_version + 1, updated_at = now()
            WHERE id = $1 AND NOT (namespace_access ? $2)""", identity_id, namespace)


async def fulfilled_operation(conn: Conn, *, operation_id: str, account_id: str, operation_type: str,
                              resource: str) -> None:
    """Record an operation done at once (an API key change).

    Raises:
        OperationIdTaken: the id is used already.
    """
    async with transaction(conn) as tx:
        await _record_fulfilled(tx, operation_id=operation_id, account_id=account_id, operation_type=operation_type,
                                resource=resource)
