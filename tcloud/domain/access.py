"""Who may do what: the account roles and namespace permissions of users and service accounts (no I/O).

Temporal Cloud's model: an identity (a user or a service account) has one account role and, per namespace, an
optional permission; every API key is owned by an identity and acts with its rights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

AccountRole = Literal["admin", "developer", "finance_admin", "read"]
ACCOUNT_ROLES: tuple[AccountRole, ...] = ("admin", "developer", "finance_admin", "read")
NamespacePermission = Literal["admin", "write", "read"]
NAMESPACE_PERMISSIONS: tuple[NamespacePermission, ...] = ("admin", "write", "read")

# What an account role allows on the control plane (beyond an identity's own API keys, which every role manages).
Action = Literal["namespace.read", "namespace.create", "namespace.write", "namespace.tag", "identity.read",
                 "identity.write", "billing.read"]
_ALLOWED: dict[Action, frozenset[AccountRole]] = {
    "namespace.read": frozenset({"admin", "developer", "read"}),
    "namespace.create": frozenset({"admin", "developer"}),
    "namespace.write": frozenset({"admin"}),  # and the namespace's own admins (see may_change_namespace)
    "namespace.tag": frozenset({"admin"}),  # Temporal Cloud: only account admins set tags (all readers see them)
    "identity.read": frozenset({"admin", "developer", "read"}),
    "identity.write": frozenset({"admin"}),
    "billing.read": frozenset({"admin", "finance_admin"}),
}


def may(role: str, action: Action) -> bool:
    """Whether ``role`` may take ``action`` on the account's resources."""
    return role in _ALLOWED[action]


def may_change_namespace(role: str, access: Mapping[str, str], namespace: str) -> bool:
    """Update or delete ``namespace``: account admins, and identities with ``admin`` permission on it."""
    return may(role, "namespace.write") or access.get(namespace) == "admin"


def data_plane_role(role: str, access: Mapping[str, str], namespace: str) -> Literal["read", "write"] | None:
    """The most a data-plane token for ``namespace`` may grant this identity (None: no token at all).

    Account admins write every namespace and the read role reads every namespace (Temporal Cloud's "Read-Only");
    otherwise the identity's permission on the namespace decides: ``admin`` and ``write`` write, ``read`` reads.
    (The claim mapper's ``admin`` stays with the control plane, which changes namespaces through its workflows.)
    """
    permission = access.get(namespace)
    if role == "admin" or permission in ("admin", "write"):
        return "write"
    if role == "read" or permission == "read":
        return "read"
    return None
