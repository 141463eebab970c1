"""API key tokens: random, shown once, stored as a lookup prefix plus a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "tcsk"


@dataclass(frozen=True)
class NewKey:
    token: str  # shown to the customer once, never stored
    prefix: str
    secret_hash: bytes


def hash_token(token: str) -> bytes:
    # The token carries 240 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()


def new_key() -> NewKey:
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(30)}"
    return NewKey(token=token, prefix=prefix, secret_hash=hash_token(token))


def parse_prefix(token: str) -> str | None:
    """The lookup prefix of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def matches(token: str, secret_hash: bytes) -> bool:
    return hmac.compare_digest(hash_token(token), secret_hash)
