"""Sign-in to the customers' Temporal UI: ``oidc_codes`` and ``oidc_refresh_tokens`` (api/oidc.py).

Codes and refresh tokens are kept as SHA-256 hashes. A code is consumed in one statement (:func:`consume_code`), so
two token requests racing with one code cannot both win; a code or a rotated refresh token presented again
revokes every refresh token of its family (the sign-in it began). Each read checks that the API key that signed in
is still usable: neither revoked, expired nor disabled, and its owner (the user or service account) not deleted.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from tcloud.store._connections import transaction

# Rows past their expiry are kept this long (a replayed code is still recognised as used), then purged.
KEEP_EXPIRED = "1 day"

_KEY_ACTIVE = """EXISTS (SELECT 1 FROM api_keys k JOIN identities i ON i.id = k.owner_id
                        WHERE k.id = {table}.api_key_id AND k.revoked_at IS NULL AND NOT k.disabled
                          AND i.state = 'active' AND (k.expires_at IS NULL OR k.expires_at > now()))"""


async def save_code(conn: asyncpg.Pool | asyncpg.Connection, *, code_hash: bytes, client_id: str, redirect_uri: str,
                    scope: str, nonce: str | None, code_challenge: str | None, code_challenge_method: str | None,
                    account_id: str, api_key_id: str, auth_time: datetime, ttl_seconds: int) -> None:
    """Record a new authorization code valid ``ttl_seconds`` from now (and purge long-expired codes)."""
    async with transaction(conn) as tx:
        await tx.execute(
            f"DELETE FROM oidc_codes WHERE expires_at < now() - interval '{KEEP_EXPIRED}'")
        await tx.execute(
            """INSERT INTO oidc_codes (code_hash, client_id, redirect_uri, scope, nonce, code_challenge,
                                       code_challenge_method, account_id, api_key_id, auth_time, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11))""",
            code_hash, client_id, redirect_uri, scope, nonce, code_challenge, code_challenge_method, account_id,
            api_key_id, auth_time, float(ttl_seconds))


async def consume_code(conn: asyncpg.Pool | asyncpg.Connection, code_hash: bytes,
                       client_id: str) -> asyncpg.Record | None:
    """Use the code: its row if it was issued to ``client_id``, is unused, unexpired and its API key still active;
    else None. A code presented after it was used revokes the refresh tokens issued from it (RFC 6749 §4.1.2)."""
    async with transaction(conn) as tx:
        row = await tx.fetchrow(
            f"""UPDATE oidc_codes SET used_at = now()
                 WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > now()
                   AND {_KEY_ACTIVE.format(table='oidc_codes')}
             RETURNING *""",
            code_hash, client_id)
        if row is None and await tx.fetchval(
                "SELECT used_at IS NOT NULL FROM oidc_codes WHERE code_hash = $1", code_hash):
            await tx.execute(
                "UPDATE oidc_refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
                code_hash)
        return row


async def nonce_seen(conn: asyncpg.Pool | asyncpg.Connection, client_id: str, nonce: str) -> bool:
    """Whether a code was already issued to ``client_id`` for ``nonce`` (a replayed authorization request)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM oidc_codes WHERE client_id = $1 AND nonce = $2)", client_id, nonce))


async def signed_in_account(conn: asyncpg.Pool | asyncpg.Connection, account_id: str,
                            api_key_id: str) -> asyncpg.Record | None:
    """Who signed in with the key ``api_key_id`` of ``account_id``, as they are now; None once the key is revoked,
    expired or disabled, or its owner deleted.

    Returns:
        The account's ``id``, ``name``, ``email`` and ``status``, and the key's owner: ``owner_id``, ``owner_kind``
        (``user`` or ``service_account``), ``owner_name`` (a user's email, a service account's name),
        ``account_role`` and ``namespace_access`` (JSON text, ``{"<namespace>": "admin" | "write" | "read"}``).
    """
    return await conn.fetchrow(
        """SELECT a.id, a.name, a.email, a.status, i.id AS owner_id, i.kind AS owner_kind, i.name AS owner_name,
                  i.account_role, i.namespace_access::text AS namespace_access
             FROM api_keys k JOIN accounts a ON a.id = k.account_id JOIN identities i ON i.id = k.owner_id
            WHERE k.id = $1 AND k.account_id = $2 AND k.revoked_at IS NULL AND NOT k.disabled
              AND i.state = 'active' AND (k.expires_at IS NULL OR k.expires_at > now())""",
        api_key_id, account_id)


async def served_namespaces(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> list[str]:
    """The account's namespaces a data-plane token may name (those active or being updated), by name."""
    return [r["namespace"] for r in await conn.fetch(
        """SELECT namespace FROM namespaces WHERE account_id = $1 AND state IN ('active', 'updating')
            ORDER BY namespace""", account_id)]


async def save_refresh_token(conn: asyncpg.Pool | asyncpg.Connection, *, token_hash: bytes, family: bytes,
                             client_id: str, scope: str, account_id: str, api_key_id: str, auth_time: datetime,
                             expires_at: datetime) -> None:
    """Record a refresh token of the sign-in ``family`` (and purge long-expired ones)."""
    async with transaction(conn) as tx:
        await tx.execute(
            f"DELETE FROM oidc_refresh_tokens WHERE expires_at < now() - interval '{KEEP_EXPIRED}'")
        await tx.execute(
            """INSERT INTO oidc_refresh_tokens (token_hash, family, client_id, scope, account_id, api_key_id,
                                                auth_time, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            token_hash, family, client_id, scope, account_id, api_key_id, auth_time, expires_at)


async def find_refresh_token(conn: asyncpg.Pool | asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The refresh token's row if it is unrevoked, unexpired and its API key still active, else None. One presented
    after it was revoked (rotated, or its family revoked) revokes every token of its family."""
    async with transaction(conn) as tx:
        row = await tx.fetchrow("SELECT * FROM oidc_refresh_tokens WHERE token_hash = $1", token_hash)
        if row is None:
            return None
        if row["revoked_at"] is not None:
            await tx.execute(
                "UPDATE oidc_refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
                row["family"])
            return None
        return await tx.fetchrow(
            f"""SELECT * FROM oidc_refresh_tokens WHERE token_hash = $1 AND expires_at > now()
                  AND {_KEY_ACTIVE.format(table='oidc_refresh_tokens')}""",
            token_hash)


async def revoke_refresh_token(conn: asyncpg.Pool | asyncpg.Connection, token_hash: bytes) -> None:
    """Revoke one refresh token (it was just exchanged for a new one)."""
    await conn.execute(
        "UPDATE oidc_refresh_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL", token_hash)
