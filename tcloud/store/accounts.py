"""Accounts and their API keys: ``accounts`` and ``api_keys``.

An account is created with its first key in one transaction (:func:`create_account_with_first_key`), and every
change to an account's set of keys (:func:`issue_key_within_limit`, :func:`revoke_key`) holds the account row's
lock, so the limit on active keys and the rule that an account keeps one active key both hold under concurrency.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tcloud.domain import apikeys
from tcloud.domain.namespace_names import account_id_from_name
from tcloud.store._connections import transaction


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    token: str  # shown to the customer once, never stored


@dataclass(frozen=True)
class NewAccount:
    row: asyncpg.Record  # the ``accounts`` row
    key: IssuedKey


class AccountExists(Exception):
    """The account id is taken."""


class ExpiryNotInFuture(Exception):
    """A new key's expiry time is not in the future."""


class KeyLimitReached(Exception):
    """The account already holds the most active keys it may."""


class KeyNotFound(Exception):
    """The account has no active key with that id."""


class LastActiveKey(Exception):
    """The key is the account's last active key."""



# Accounts


async def insert_account(conn: asyncpg.Pool | asyncpg.Connection, *, account_id: str | None, name: str, email: str,
                         plan: str) -> str:
    """Insert the account row; an id derived from ``name`` steps around ids already taken.

    Returns:
        The account id.

    Raises:
        AccountExists: when the given ``account_id`` is taken.
    """
    candidates = [account_id] if account_id else [account_id_from_name(name)] + [
        account_id_from_name(name, random_suffix=True) for _ in range(5)]
    for candidate in candidates:
        inserted = await conn.fetchval(
            """INSERT INTO accounts (id, name, email, plan) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO NOTHING RETURNING id""",
            candidate, name, email, plan,
        )
        if inserted is not None:
            return str(inserted)
    raise AccountExists(f"account {candidates[0]} already exists")


async def create_account_with_first_key(conn: asyncpg.Pool | asyncpg.Connection, *, account_id: str | None,
                                        name: str, email: str, plan: str,
                                        key_display_name: str = "first key") -> NewAccount:
    """Insert the account (see :func:`insert_account`) and its first API key in one transaction.

    Raises:
        AccountExists: when the given ``account_id`` is taken (nothing is stored).
    """
    async with transaction(conn) as tx:
        new_id = await insert_account(tx, account_id=account_id, name=name, email=email, plan=plan)
        key = await issue_key(tx, new_id, display_name=key_display_name)
        row = await tx.fetchrow("SELECT * FROM accounts WHERE id = $1", new_id)
    return NewAccount(row, key)


async def delete_new_account(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> None:
    """Take back an account that nothing refers to yet (its setup could not start): its keys, then its row."""
    async with transaction(conn) as tx:
        await tx.execute("DELETE FROM api_keys WHERE account_id = $1", account_id)
        await tx.execute("DELETE FROM identities WHERE account_id = $1", account_id)
        await tx.execute("DELETE FROM accounts WHERE id = $1", account_id)


async def find_account(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """The account's row, or None."""
    return await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)


async def list_accounts(conn: asyncpg.Pool | asyncpg.Connection, status: str = "") -> list[asyncpg.Record]:
    """Every account in ``status`` (every account when it is empty), by id."""
    return list(await conn.fetch("SELECT * FROM accounts WHERE $1 = '' OR status = $1 ORDER BY id", status))


async def set_account_status(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, status: str,
                             reason: str | None) -> asyncpg.Record | None:
    """Set the account's status and its reason.

    Returns:
        The updated row, or None when there is no such account.
    """
    return await conn.fetchrow(
        """UPDATE accounts SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1 RETURNING *""",
        account_id, status, reason)


class ClosureRefused(Exception):
    """The account cannot be closed or reopened now; the message says why."""


async def begin_account_closure(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *, grace_seconds: int,
                                reason: str) -> asyncpg.Record | None:
    """Move an active or suspended account to 'closing' from now, until the grace ends (one statement).

    Returns:
        The updated row, or None when there is no such account.

    Raises:
        ClosureRefused: when the account is closing or closed already.
    """
    async with transaction(conn) as tx:
        row = await tx.fetchrow("SELECT * FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if row is None:
            return None
        if row["status"] in ("closing", "closed"):
            raise ClosureRefused(f"account {account_id} is {row['status']} already")
        return await tx.fetchrow(
            """UPDATE accounts
                  SET closure_prior_status = status, closure_prior_reason = status_reason,
                      status = 'closing', status_reason = $2, closed_at = now(),
                      closure_grace_until = now() + make_interval(secs => $3), updated_at = now()
                WHERE id = $1 RETURNING *""", account_id, reason, grace_seconds)


async def reopen_account(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """Take back a closure within its grace: the account returns to the status it had, as if never closed.

    Returns:
        The updated row, or None when there is no such account.

    Raises:
        ClosureRefused: when the account is not closing, or its grace is over.
    """
    async with transaction(conn) as tx:
        row = await tx.fetchrow("SELECT *, now() >= closure_grace_until AS grace_over FROM accounts "
                                "WHERE id = $1 FOR UPDATE", account_id)
        if row is None:
            return None
        if row["status"] != "closing":
            raise ClosureRefused(f"account {account_id} is {row['status']}: only a closing account can be reopened")
        if row["grace_over"]:
            raise ClosureRefused(f"the grace to reopen account {account_id} ended at "
                                 f"{row['closure_grace_until'].isoformat()}")
        return await tx.fetchrow(
            """UPDATE accounts
                  SET status = closure_prior_status, status_reason = closure_prior_reason, closed_at = NULL,
                      closure_grace_until = NULL, closure_prior_status = NULL, closure_prior_reason = NULL,
                      updated_at = now()
                WHERE id = $1 RETURNING *""", account_id)


async def finish_account_closure(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """Close a closing account for good (idempotent: a closed one is returned as it is).

    Returns:
        The closed account's row, or None when it is not closing or closed (it was reopened, or never closed).
    """
    return await conn.fetchrow(
        """UPDATE accounts SET status = 'closed', updated_at = now()
            WHERE id = $1 AND status IN ('closing', 'closed') RETURNING *""", account_id)


async def request_stripe_customer(conn: asyncpg.Pool | asyncpg.Connection,
                                  account_id: str) -> asyncpg.Record | None:
    """Record that the account's Stripe customer is being created (the first time only).

    Returns:
        ``name``, ``email``, ``stripe_customer_id`` and ``attempted_before`` (an earlier attempt was recorded), or
        None when there is no such account.
    """
    return await conn.fetchrow(
        """UPDATE accounts SET stripe_customer_requested_at = coalesce(stripe_customer_requested_at, now())
            WHERE id = $1
        RETURNING name, email, stripe_customer_id,
                  stripe_customer_requested_at < now() AS attempted_before""",
        account_id,
    )


async def record_stripe_customer(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, customer_id: str) -> None:
    """Record the account's Stripe customer unless it already has one."""
    await conn.execute(
        """UPDATE accounts SET stripe_customer_id = $2, updated_at = now()
            WHERE id = $1 AND stripe_customer_id IS NULL""",
        account_id, customer_id,
    )


# API keys


async def issue_key(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *, display_name: str = "",
                    description: str = "", expires_at: datetime | None = None, owner_id: str | None = None,
                    disabled: bool = False) -> IssuedKey:
    """Store a new API key of ``account_id`` (prefix and hash only) and return its token once.

    ``owner_id`` is the user or service account it acts for; None: the account's admin service account
    (``sa-<account>``, made on first use), which has all of the account's rights.
    """
    key = apikeys.new_key()
    key_id = "key-" + secrets.token_hex(8)
    await conn.execute(
        """INSERT INTO api_keys (id, account_id, display_name, description, prefix, secret_hash, expires_at,
                                 owner_id, disabled)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        key_id, account_id, display_name, description, key.prefix, key.secret_hash, expires_at, owner_id, disabled,
    )
    return IssuedKey(key_id, key.token)


async def issue_key_within_limit(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *, limit: int,
                                 display_name: str = "", description: str = "",
                                 expires_at: datetime | None = None, owner_id: str | None = None,
                                 disabled: bool = False) -> IssuedKey:
    """Issue a key (see :func:`issue_key`) unless the account already holds ``limit`` unrevoked keys.

    Raises:
        ExpiryNotInFuture: when ``expires_at`` is not after the database's now.
        KeyLimitReached: when the account holds ``limit`` or more unrevoked keys.
        KeyNotFound: when ``owner_id`` is not an active identity of the account (its id in the exception).
    """
    async with transaction(conn) as tx:
        await tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if expires_at is not None and expires_at <= await tx.fetchval("SELECT now()"):
            raise ExpiryNotInFuture(expires_at)
        active = await tx.fetchval(
            "SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL", account_id)
        if active >= limit:
            raise KeyLimitReached(limit)
        if owner_id is not None and await tx.fetchval(
                "SELECT 1 FROM identities WHERE id = $1 AND account_id = $2 AND state = 'active'",
                owner_id, account_id) is None:
            raise KeyNotFound(owner_id)
        return await issue_key(tx, account_id, display_name=display_name, description=description,
                               expires_at=expires_at, owner_id=owner_id, disabled=disabled)


async def list_active_keys(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's keys neither revoked nor expired (disabled ones included), oldest first, with their owner's
    ``owner_kind`` (user, service_account)."""
    return list(await conn.fetch(
        """SELECT k.*, i.kind AS owner_kind FROM api_keys k JOIN identities i ON i.id = k.owner_id
            WHERE k.account_id = $1 AND k.revoked_at IS NULL
              AND (k.expires_at IS NULL OR k.expires_at > now()) ORDER BY k.created_at, k.id""",
        account_id))


async def revoke_key(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, key_id: str) -> None:
    """Revoke the account's key ``key_id``, unless no account admin would keep a usable key.

    Raises:
        KeyNotFound: when the account has no unrevoked key ``key_id``.
        LastActiveKey: when no admin of the account would keep a key neither revoked, disabled nor expired.
    """
    async with transaction(conn) as tx:
        await tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        found = await tx.fetchval(
            "SELECT 1 FROM api_keys WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL", key_id, account_id)
        if found is None:
            raise KeyNotFound(key_id)
        await tx.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
        await _admin_key_remains(tx, account_id, key_id)


async def _admin_key_remains(tx: asyncpg.Connection, account_id: str, key_id: str) -> None:
    """Raise LastActiveKey unless an account admin still holds a usable key (else nobody could manage the account)."""
    usable = await tx.fetchval(
        """SELECT count(*) FROM api_keys k JOIN identities i ON i.id = k.owner_id
            WHERE k.account_id = $1 AND k.revoked_at IS NULL AND NOT k.disabled
              AND (k.expires_at IS NULL OR k.expires_at > now())
              AND i.state = 'active' AND i.account_role = 'admin'""", account_id)
    if usable == 0:
        raise LastActiveKey(key_id)


async def update_key(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, key_id: str, *,
                     check: Callable[[asyncpg.Record], None], display_name: str, description: str,
                     disabled: bool) -> asyncpg.Record:
    """Change the key's name, description and ``disabled`` (a disabled key authenticates nothing) and bump its
    ``resource_version``; ``check`` gets the locked row and refuses by raising.

    Raises:
        KeyNotFound: the account has no unrevoked key ``key_id``.
        LastActiveKey: disabling it would leave no account admin with a usable key (nothing stored).
    """
    async with transaction(conn) as tx:
        await tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        row = await tx.fetchrow(
            """SELECT * FROM api_keys WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL FOR UPDATE""",
            key_id, account_id)
        if row is None:
            raise KeyNotFound(key_id)
        check(row)
        updated = await tx.fetchrow(
            """UPDATE api_keys SET display_name = $2, description = $3, disabled = $4, updated_at = now(),
                      resource_version = resource_version + 1
                WHERE id = $1 RETURNING *""", key_id, display_name, description, disabled)
        if disabled:
            await _admin_key_remains(tx, account_id, key_id)
    return updated


async def find_active_key_by_prefix(conn: asyncpg.Pool | asyncpg.Connection,
                                    prefix: str) -> asyncpg.Record | None:
    """The unrevoked, unexpired key with lookup ``prefix``, or None.

    Returns:
        ``id``, ``secret_hash`` and ``account_id`` of the key, its account's ``status``, and its owner: ``owner_id``,
        ``owner_kind``, ``account_role`` and ``namespace_access`` (JSON text). A disabled key, or one whose owner
        was deleted, is not found.
    """
    return await conn.fetchrow(
        """SELECT k.id, k.secret_hash, k.account_id, a.status, k.owner_id, i.kind AS owner_kind, i.account_role,
                  i.namespace_access::text AS namespace_access
             FROM api_keys k JOIN accounts a ON a.id = k.account_id JOIN identities i ON i.id = k.owner_id
            WHERE k.prefix = $1 AND k.revoked_at IS NULL AND NOT k.disabled AND i.state = 'active'
              AND (k.expires_at IS NULL OR k.expires_at > now())""",
        prefix,
    )


async def mark_key_used(conn: asyncpg.Pool | asyncpg.Connection, key_id: str) -> None:
    """Record that the key was just used (at most one write a minute per key)."""
    await conn.execute(
        """UPDATE api_keys SET last_used_at = now()
            WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        key_id,
    )


async def stripe_customer_of(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> str | None:
    """The account's Stripe customer id, or None before account creation has made it."""
    value = await conn.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
    return str(value) if value is not None else None


async def account_of_stripe_customer(conn: asyncpg.Pool | asyncpg.Connection, stripe_customer_id: str) -> str | None:
    """The account whose Stripe customer is ``stripe_customer_id``, or None if it is not one of ours."""
    value = await conn.fetchval("SELECT id FROM accounts WHERE stripe_customer_id = $1", stripe_customer_id)
    return str(value) if value is not None else None
