"""Account and API key rows: the SQL shared by the API routes (the Stripe customer is a workflow's job)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tcloud import apikeys
from tcloud.namespace_names import account_id_from_name


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    token: str  # shown to the customer once, never stored


class AccountExists(Exception):
    """The account id is taken."""


async def issue_key(conn: asyncpg.Connection, account_id: str, *, display_name: str = "", description: str = "",
                    expires_at: datetime | None = None) -> IssuedKey:
    """Store a new API key of ``account_id`` (prefix and hash only) and return its token once."""
    key = apikeys.new_key()
    key_id = "key-" + secrets.token_hex(8)
    await conn.execute(
        """INSERT INTO api_keys (id, account_id, display_name, description, prefix, secret_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        key_id, account_id, display_name, description, key.prefix, key.secret_hash, expires_at,
    )
    return IssuedKey(key_id, key.token)


async def insert_account(conn: asyncpg.Connection, *, account_id: str | None, name: str, email: str,
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
