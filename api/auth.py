"""Who is calling: a customer (Bearer API key), the operator (Bearer admin token) or nobody."""

from __future__ import annotations

import hmac
import json
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from api.appkeys import POOL, SETTINGS
from api.errors import ApiError
from api.throttle import client_address, throttle_of
from tcloud.domain import access, apikeys
from tcloud.store.accounts import find_active_key_by_prefix, mark_key_used

_NO_HASH = bytes(32)  # compared against when no key has the presented prefix


@dataclass(frozen=True)
class Customer:
    """The caller behind an API key: its account, and the user or service account that owns the key."""

    account_id: str
    key_id: str
    account_status: str
    owner_id: str = ""
    owner_kind: str = "service_account"
    role: str = "admin"  # the owner's account role (tcloud.domain.access)
    namespace_access: Mapping[str, str] = field(default_factory=dict)

    def require_writable(self) -> None:
        """Suspended accounts may read but not create or change resources."""
        if self.account_status != "active":
            raise ApiError(403, f"account is {self.account_status}: resources cannot be created or changed")

    def require(self, action: access.Action) -> None:
        """403 unless the key's owner's account role allows ``action``."""
        if not access.may(self.role, action):
            raise ApiError(403, f"the account role {self.role} does not allow {action}")


def bearer(request: web.Request) -> str | None:
    return bearer_of(request.headers.get("Authorization", ""))


def bearer_of(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (HTTP) or ``authorization`` metadata (gRPC)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_operator(request: web.Request) -> bool:
    expected = request.app[SETTINGS].operator_token
    token = bearer(request)
    if expected is None or token is None:
        return False
    return hmac.compare_digest(token.encode(), expected.get_secret_value().encode())


def require_operator(request: web.Request) -> None:
    if bearer(request) is None:
        raise ApiError(401, "missing bearer token")
    client = _not_throttled(request)
    if not is_operator(request):
        throttle_of(request.app).record_failure(client)
        raise ApiError(403, "this route needs the operator token")


def _not_throttled(request: web.Request) -> str:
    """The caller's address; 429 (before any key is checked) while it has failed authentication too often."""
    client = client_address(request)
    _refuse_if_throttled(request.app, client)
    return client


def _refuse_if_throttled(app: web.Application, client: str) -> None:
    wait = throttle_of(app).retry_after(client)
    if wait is not None:
        raise ApiError(429, f"too many failed authentications from this address: retry in {wait} s",
                       details={"retryAfterSeconds": wait}, headers={"Retry-After": str(wait)})


async def require_customer(request: web.Request) -> Customer:
    """The account behind the request's API key; 401 for a missing, unknown, revoked or expired key."""
    return await customer_of_key(request.app, bearer(request), client_address(request))


async def require_billing(request: web.Request) -> Customer:
    """:func:`require_customer` for billing and usage: account admins and finance admins only (else 403)."""
    customer = await require_customer(request)
    customer.require("billing.read")
    return customer


async def customer_of_key(app: web.Application, token: str | None, client: str) -> Customer:
    """The account behind an API key, for either door (the JSON routes and the gRPC server).

    Args:
        app: the API application (its pool and its failed-authentication throttle).
        token: the bearer token the caller presented, None if it presented none.
        client: the caller's address, for the throttle.

    Raises:
        ApiError: 401 for a missing, unknown, revoked or expired key; 429 while the address is throttled.
    """
    if token is None:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <api key>'")
    _refuse_if_throttled(app, client)
    prefix = apikeys.parse_prefix(token)
    row = await find_active_key_by_prefix(app[POOL], prefix) if prefix is not None else None
    # Hash every presented token, found or not, so the answer takes the same time either way.
    if not apikeys.matches(token, row["secret_hash"] if row is not None else _NO_HASH) or row is None:
        throttle_of(app).record_failure(client)
        raise ApiError(401, "invalid API key")
    await _mark_used(app, row["id"])
    return Customer(account_id=row["account_id"], key_id=row["id"], account_status=row["status"],
                    owner_id=row["owner_id"], owner_kind=row["owner_kind"], role=row["account_role"],
                    namespace_access=json.loads(row["namespace_access"]))


# When this process last recorded each key's use, per application: the database keeps one write a minute per key,
# so a key this process marked less than a minute ago needs no statement at all.
_MARKED: weakref.WeakKeyDictionary[web.Application, dict[str, float]] = weakref.WeakKeyDictionary()
_MARK_EVERY_SECONDS = 60.0


async def _mark_used(app: web.Application, key_id: str) -> None:
    marked = _MARKED.setdefault(app, {})
    now = time.monotonic()
    last = marked.get(key_id)
    if last is not None and now - last < _MARK_EVERY_SECONDS:
        return
    if len(marked) > 10_000:  # keys not seen for a minute are forgotten
        for stale in [k for k, at in marked.items() if now - at >= _MARK_EVERY_SECONDS]:
            del marked[stale]
    marked[key_id] = now
    await mark_key_used(app[POOL], key_id)
