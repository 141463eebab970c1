"""Names of accounts and namespaces, following Temporal Cloud's rules.

Temporal Cloud (https://docs.temporal.io/cloud/namespaces, "What is a Cloud Namespace Name?"):

- a Namespace Name contains at least 2 and at most 39 characters;
- it begins with a letter, ends with a letter or number, and contains only letters, numbers and the hyphen;
- each hyphen is immediately preceded and followed by a letter or number (no consecutive hyphens);
- all letters are lowercase.

The namespace on the Temporal server is the Namespace Id ``<name>.<account_id>``.
"""

from __future__ import annotations

import re
import secrets

NAME_MIN, NAME_MAX = 2, 39
_NAME = re.compile(r"[a-z](?:-?[a-z0-9])+")
ACCOUNT_ID = re.compile(r"[a-z][a-z0-9]{2,31}")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Namespace Name, or None when it is.

    Args:
        name: the customer-supplied Namespace Name (without the account suffix).

    Returns:
        A message for the caller, or None.
    """
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return f"namespace name must be {NAME_MIN} to {NAME_MAX} characters long"
    if name != name.lower():
        return "namespace name must be lowercase"
    if not _NAME.fullmatch(name):
        return ("namespace name must begin with a letter, end with a letter or number, and contain only "
                "letters, numbers and single hyphens between them")
    return None


def namespace_id(name: str, account_id: str) -> str:
    """The namespace on the Temporal server: ``<name>.<account_id>``."""
    return f"{name}.{account_id}"


def split_namespace_id(namespace: str) -> tuple[str, str] | None:
    """``(name, account_id)`` of a well-formed namespace id, else None."""
    name, dot, account = namespace.rpartition(".")
    if not dot or name_problem(name) is not None or not ACCOUNT_ID.fullmatch(account):
        return None
    return name, account


def is_account_id(value: str) -> bool:
    """Whether ``value`` is a valid account id (``[a-z][a-z0-9]{2,31}``)."""
    return ACCOUNT_ID.fullmatch(value) is not None


def account_id_from_name(name: str, *, random_suffix: bool = False) -> str:
    """An account id derived from a display name: lowercase letters and digits, starting with a letter.

    Args:
        name: the account's display name.
        random_suffix: append four random digits (to step around an id already taken).

    Returns:
        A string matching ``[a-z][a-z0-9]{2,31}``.
    """
    base = re.sub(r"[^a-z0-9]", "", name.lower()).lstrip("0123456789") or "acct"
    if random_suffix:
        base = base[:28] + f"{secrets.randbelow(10_000):04d}"
    base = base[:32]
    return base if len(base) >= 3 else (base + "000")[:3]
