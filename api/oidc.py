"""The platform as the OpenID Connect provider of the customers' Temporal UI, on authlib's authorization server.

The UI server (``auth.providers[0]``: ``providerUrl`` = our issuer) sends the browser to our authorization
endpoint, where the customer signs in with an API key, which signs in its owner (a user or a service account); it
exchanges the code at our token endpoint (client secret) and forwards the access token to Temporal on every call.
What authlib gives (``AuthorizationCodeGrant`` with ``CodeChallenge`` and ``OpenIDCode``, ``RefreshTokenGrant``
with ``OpenIDToken``, ``UserInfoEndpoint``) and what this module adds:

- Clients are registered in settings: the customers' UI (confidential, ``client_secret_basic``/``_post``, exactly
  its redirect URIs) and any in ``TCLOUD_OIDC_EXTRA_CLIENTS`` (without a secret: a public client, which must use
  PKCE). PKCE is S256 only, and once a code carries a challenge the token request must prove it (a verifier
  without a challenge is refused too). An authorization request without PKCE is accepted only from a confidential
  client asking for ``openid`` with a ``nonce`` (RFC 9700 §2.1.1: PKCE is RECOMMENDED for confidential clients,
  which MAY instead rely on the OpenID nonce): the UI server (every ui-server release up to v2.58.1) sends no
  PKCE, and checks the ID token's nonce against its cookie before it uses any token.
- ``nonce`` is required with ``openid`` and may not repeat; ``state`` is returned as given (the UI server checks
  it against its cookie). Codes live ``oidc_code_ttl_seconds`` (60 s), are bound to the client and redirect URI,
  and are consumed atomically at first use (tcloud/store/oidc.py): a replayed code answers ``invalid_grant`` and
  revokes the tokens issued from it.
- Access tokens are RS256 JWTs signed with the data-plane key (``kid`` from ``/.well-known/jwks.json``) in the
  format of Temporal's default JWT claim mapper: ``permissions: ["<namespace>:<role>", ...]`` for each of the
  account's active namespaces that the key's owner may use, with the role a data-plane token of the key gets
  (``tcloud.domain.access.data_plane_role``: ``write`` for account admins and ``admin``/``write`` access, ``read``
  for the read role and ``read`` access; everything ``read`` while the account is suspended or closing). ``sub`` is
  the owner (a user's or service account's id; the account id for the account's own admin service account, which
  owns the keys made before users existed), ``tcloud_account`` the account; also ``iss``, ``aud`` (the client) and
  ``exp`` so the UI server's own check passes. The UI forwards it to the Temporal server, which enforces it. ID
  tokens and userinfo carry ``sub``, ``name`` and ``email`` (a user's email; the account's for its admin service
  account; a service account's name and no email), and the ID token the ``nonce``.
  Both live ``oidc_token_ttl_seconds``; refresh tokens (opaque, rotated on use) renew them, re-reading the
  account's namespaces and the owner's access, until ``oidc_session_seconds`` after the sign-in. Revoking or
  disabling the API key, or deleting its owner, ends every sign-in made with it at its next refresh (and the
  userinfo endpoint refuses its access tokens at once).

authlib is synchronous; aiohttp is not. Each request is read first, then handed to authlib in a worker thread,
and authlib's storage hooks run their Postgres calls back on the event loop (:meth:`Provider._run`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import jwt as pyjwt
from aiohttp import web
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.resource_protector import ResourceProtector
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import RSAKey

from api import jwt as data_plane
from api.appkeys import POOL, SETTINGS
from tcloud.domain import access
from tcloud.settings import Settings
from tcloud.store import oidc as store

T = TypeVar("T")

SCOPES = ("openid", "profile", "email")
RESPONSE_TYPES = ("code",)
GRANT_TYPES = ("authorization_code", "refresh_token")
CODE_CHALLENGE_METHODS = ("S256",)
# A suspended or closing account may read but not change anything: every namespace is read-only then.
ROLE_RESTRICTED = "read"
AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATH = "/oauth2/token"
USERINFO_PATH = "/oauth2/userinfo"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
MAX_PARAMETER_LENGTH = 2048
HOOK_TIMEOUT_SECONDS = 30


def digest(value: str) -> bytes:
    """What is stored of a code or a refresh token."""
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """A registered client: its exact redirect URIs, and a secret unless it is public."""

    client_id: str
    secret: str | None
    redirect_uris: tuple[str, ...]

    @property
    def public(self) -> bool:
        return self.secret is None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in scope_to_list(scope or "") or [] if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exactly as registered: no prefix, no pattern

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and hmac.compare_digest(client_secret.encode(), self.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return True
        return method == "none" if self.public else method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type in RESPONSE_TYPES

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


def clients(settings: Settings) -> dict[str, Client]:
    """Every registered client, by id: the customers' UI (when its secret is set) and the extra ones."""
    found: dict[str, Client] = {}
    if settings.oidc_client_secret is not None:
        found[settings.oidc_client_id] = Client(settings.oidc_client_id,
                                                settings.oidc_client_secret.get_secret_value(),
                                                tuple(settings.customer_ui_redirect_uris))
    for client_id, extra in settings.oidc_extra_clients.items():
        found[client_id] = Client(client_id, extra.secret.get_secret_value() if extra.secret else None,
                                  tuple(extra.redirect_uris))
    return found


@dataclass(frozen=True)
class SignedIn:
    """The resource owner: whoever owns the API key that signed in at ``auth_time`` (a user or a service account of
    ``account_id``), with the claims about them and the ``permissions`` their access gives now."""

    account_id: str
    api_key_id: str
    auth_time: int
    subject: str = ""
    name: str = ""
    email: str = ""
    permissions: tuple[str, ...] = ()


def owner_claims(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """``sub``, ``name`` and ``email`` of a key's owner (a row of ``tcloud.store.oidc.signed_in_account``): a user
    is their id and email; the account's own admin service account (``sa-<account>``, owner of the keys made before
    users existed) is the account, as before; another service account is its id and name, without an email."""
    if row["owner_kind"] == "user":
        return row["owner_id"], row["owner_name"], row["owner_name"]
    if row["owner_id"] == f"sa-{row['id']}":
        return row["id"], row["name"], row["email"]
    return row["owner_id"], row["owner_name"], ""


def permissions(row: Mapping[str, Any], namespaces: list[str]) -> tuple[str, ...]:
    """The claim mapper's ``<namespace>:<role>`` for each of ``namespaces`` the owner may use, with the role a
    data-plane token of the key gets there (read only while the account is not active)."""
    namespace_access = json.loads(row["namespace_access"]) if isinstance(row["namespace_access"], str) else dict(
        row["namespace_access"])
    found: list[str] = []
    for namespace in namespaces:
        role = access.data_plane_role(row["account_role"], namespace_access, namespace)
        if role is None:
            continue
        found.append(f"{namespace}:{role if row['status'] == 'active' else ROLE_RESTRICTED}")
    return tuple(found)


class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, row: Mapping[str, Any], code_hash: bytes):
        self.row = row
        self.code_hash = code_hash
        self.code_challenge = row["code_challenge"]
        self.code_challenge_method = row["code_challenge_method"]

    def get_redirect_uri(self) -> str:
        return str(self.row["redirect_uri"])

    def get_scope(self) -> str:
        return str(self.row["scope"])

    def get_nonce(self) -> str | None:
        return self.row["nonce"]

    def get_auth_time(self) -> int:
        return int(self.row["auth_time"].timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]  # an API key: something the customer knows


class _RefreshToken(TokenMixin):  # type: ignore[misc]
    def __init__(self, row: Mapping[str, Any]):
        self.row = row

    def check_client(self, client: Client) -> bool:
        return bool(client.client_id == self.row["client_id"])

    def get_scope(self) -> str:
        return str(self.row["scope"])

    def get_expires_in(self) -> int:
        return max(0, int(self.row["expires_at"].timestamp() - time.time()))

    def is_expired(self) -> bool:
        return self.get_expires_in() <= 0

    def is_revoked(self) -> bool:
        return self.row["revoked_at"] is not None

    def get_user(self) -> None:
        return None

    def get_client(self) -> None:
        return None


@dataclass
class AccessToken(TokenMixin):  # type: ignore[misc]
    """An access token this provider issued, as the userinfo endpoint sees it."""

    claims: dict[str, Any]
    client: Client
    user: SignedIn

    @property
    def scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.claims["exp"] - self.claims["iat"])

    def is_expired(self) -> bool:
        return bool(self.claims["exp"] <= time.time())

    def is_revoked(self) -> bool:
        return False  # checked when it is read: the API key behind it must still be active

    def get_user(self) -> SignedIn:
        return self.user

    def get_client(self) -> Client:
        return self.client


# --- authlib's grants, bound to our storage ------------------------------------------------------------------


class _Pkce(CodeChallenge):  # type: ignore[misc]
    """RFC 7636 with S256 only. Without a challenge a request is refused unless it comes from a confidential client
    and is an OpenID request with a nonce (RFC 9700 §2.1.1), which protects its code instead: a public client must
    always send one."""

    SUPPORTED_CODE_CHALLENGE_METHOD = list(CODE_CHALLENGE_METHODS)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") not in CODE_CHALLENGE_METHODS:
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)
        if data.get("code_challenge"):
            return
        if grant.request.client.public:
            raise InvalidRequestError("a public client must use PKCE: send 'code_challenge' (S256)")
        if "openid" not in (scope_to_list(data.get("scope") or "") or []) or not data.get("nonce"):
            raise InvalidRequestError("without PKCE ('code_challenge', S256) the request must be an OpenID request "
                                      "('openid' scope) with a 'nonce'")


class _OpenIdMixin:
    """What both OIDC extensions share: our key, issuer and claims."""

    provider: Provider

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.private_jwk

    def get_client_algorithm(self, client: Client) -> str:
        return data_plane.ALGORITHM

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": data_plane.ALGORITHM, "kid": self.provider.kid}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.client_id],
                "exp": int(time.time()) + self.provider.settings.oidc_token_ttl_seconds}

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_compatible_claims(request)  # type: ignore[misc]
        if isinstance(request.user, SignedIn):
            claims["auth_time"] = request.user.auth_time
        return claims

    def generate_user_info(self, user: SignedIn, scope: str) -> UserInfo:
        return user_info(user, scope)


class _OpenIdCode(_OpenIdMixin, OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: Provider):
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.provider._run(store.nonce_seen(self.provider.pool, request.payload.client_id, nonce))


class _OpenIdRefresh(_OpenIdMixin, OpenIDToken):  # type: ignore[misc]
    """A new ID token with each refreshed access token (the UI keeps the pair)."""

    def __init__(self, provider: Provider):
        self.provider = provider

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: Provider

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: SignedIn = request.user
        data = request.payload.data
        self.server._run(store.save_code(
            self.server.pool, code_hash=digest(code), client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=request.scope or "", nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"), account_id=user.account_id,
            api_key_id=user.api_key_id, auth_time=datetime.fromtimestamp(user.auth_time, UTC),
            ttl_seconds=self.server.settings.oidc_code_ttl_seconds))

    def query_authorization_code(self, code: str, client: Client) -> _Code | None:
        code_hash = digest(code)
        row = self.server._run(store.consume_code(self.server.pool, code_hash, client.client_id))
        return _Code(row, code_hash) if row is not None else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        """Nothing to do: the code was consumed when it was read."""

    def authenticate_user(self, authorization_code: _Code) -> SignedIn | None:
        row = authorization_code.row
        return self.server.signed_in(row["account_id"], row["api_key_id"], authorization_code.get_auth_time())


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotated at each use
    server: Provider

    def authenticate_refresh_token(self, refresh_token: str) -> _RefreshToken | None:
        row = self.server._run(store.find_refresh_token(self.server.pool, digest(refresh_token)))
        return _RefreshToken(row) if row is not None else None

    def authenticate_user(self, refresh_token: _RefreshToken) -> SignedIn | None:
        row = refresh_token.row
        return self.server.signed_in(row["account_id"], row["api_key_id"], int(row["auth_time"].timestamp()))

    def revoke_old_credential(self, refresh_token: _RefreshToken) -> None:
        self.server._run(store.revoke_refresh_token(self.server.pool, refresh_token.row["token_hash"]))


class _AccessTokenValidator(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, provider: Provider):
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> AccessToken | None:
        return self.provider.access_token(token_string)


class _UserInfo(UserInfoEndpoint):  # type: ignore[misc]
    def __call__(self, request: OAuth2Request) -> tuple[int, Any, list[tuple[str, str]]]:
        token: AccessToken = self.resource_protector.validate_request(["openid"], request)
        return 200, self.generate_user_info(token.get_user(), token.scope), [
            ("Content-Type", "application/json"), ("Cache-Control", "no-store")]

    def generate_user_info(self, user: SignedIn, scope: str) -> UserInfo:
        return user_info(user, scope)


def user_info(user: SignedIn, scope: str) -> UserInfo:
    """The claims about who signed in that the scope allows: ``sub`` always, ``name`` (profile), ``email`` (email,
    when they have one)."""
    scopes = scope_to_list(scope) or []
    info = UserInfo(sub=user.subject or user.account_id)
    if "profile" in scopes:
        info["name"] = user.name
    if "email" in scopes and user.email:
        info["email"] = user.email
    return info


# --- the server ----------------------------------------------------------------------------------------------


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: list[tuple[str, str]]):
        self._datalist: dict[str, list[str]] = {}
        for key, value in values:
            self._datalist.setdefault(key, []).append(value)
        self._data = {key: items[0] for key, items in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class Request(OAuth2Request):  # type: ignore[misc]
    """An HTTP request read in full before authlib sees it (authlib runs in a worker thread)."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], query: list[tuple[str, str]],
                 form: list[tuple[str, str]]):
        super().__init__(method=method, uri=uri, headers=dict(headers))
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class BadParameter(Exception):
    """A parameter no client would send (too long, a NUL, not text): refused before authlib sees it."""


def _checked(values: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for key, value in values:
        for text in (key, value):
            if len(text) > MAX_PARAMETER_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise BadParameter(f"parameter {key[:40]!r} is not acceptable")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise BadParameter(f"parameter {key[:40]!r} is not text") from err
    return values


async def read_request(http: web.Request, issuer: str, *, form: bool) -> Request:
    """The request as authlib wants it, at the issuer's URL (behind the ingress the scheme is https)."""
    query = _checked(list(http.query.items()))
    body: list[tuple[str, str]] = []
    if form and http.content_type == "application/x-www-form-urlencoded":
        body = _checked([(k, v) for k, v in (await http.post()).items() if isinstance(v, str)])
    return Request(http.method, issuer.rstrip("/") + http.path_qs, http.headers, query, body)


class Provider(AuthorizationServer):  # type: ignore[misc]
    """authlib's authorization server with our clients, grants, token format and storage."""

    def __init__(self, settings: Settings, app: web.Application, loop: asyncio.AbstractEventLoop):
        super().__init__(scopes_supported=list(SCOPES))
        self.settings = settings
        self.app = app
        self.loop = loop
        self.registered = clients(settings)
        key = data_plane.signing_key(settings)
        self.kid = key.kid
        self.private_jwk = RSAKey.import_key(_pem(key), {"kid": key.kid})
        self.register_token_generator("default", self._generate_token)
        self.register_grant(_CodeGrant, [_Pkce(required=True), _OpenIdCode(self)])
        self.register_grant(_RefreshGrant, [_OpenIdRefresh(self)])
        protector = ResourceProtector()
        protector.register_token_validator(_AccessTokenValidator(self))
        self.register_endpoint(_UserInfo(resource_protector=protector))

    @property
    def issuer(self) -> str:
        return self.settings.oidc_issuer.rstrip("/")

    @property
    def pool(self) -> Any:
        return self.app[POOL]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a storage coroutine on the event loop from authlib's worker thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=HOOK_TIMEOUT_SECONDS)

    # authlib's hooks

    def query_client(self, client_id: str) -> Client | None:
        return self.registered.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        refresh = token.get("refresh_token")
        if not refresh:
            return
        user: SignedIn = request.user
        if request.authorization_code is not None:
            family = request.authorization_code.code_hash
        else:
            family = request.refresh_token.row["family"]
        self._run(store.save_refresh_token(
            self.pool, token_hash=digest(refresh), family=family, client_id=request.client.client_id,
            scope=token.get("scope") or "", account_id=user.account_id, api_key_id=user.api_key_id,
            auth_time=datetime.fromtimestamp(user.auth_time, UTC),
            expires_at=datetime.fromtimestamp(user.auth_time + self.settings.oidc_session_seconds, UTC)))

    def create_oauth2_request(self, request: Request) -> Request:
        return request

    def create_json_request(self, request: Request) -> Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> web.Response:
        headers = list(headers)
        if isinstance(body, dict):
            if "error" in body:  # also in the platform's error shape, {code, message}
                body = {**body, "code": status, "message": body.get("error_description") or body["error"]}
            return web.json_response(body, status=status, headers=[h for h in headers if h[0] != "Content-Type"])
        if status in (301, 302, 303):
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, text=str(body), headers=headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    # What the grants need

    def signed_in(self, account_id: str, api_key_id: str, auth_time: int) -> SignedIn | None:
        """Who is behind a code or refresh token, with their access to the account's namespaces now; None once the
        key is revoked, expired or disabled, its owner deleted, or the session is over."""
        if auth_time + self.settings.oidc_session_seconds <= time.time():
            return None
        row = self._run(store.signed_in_account(self.pool, account_id, api_key_id))
        if row is None:
            return None
        namespaces = self._run(store.served_namespaces(self.pool, account_id))
        subject, name, email = owner_claims(row)
        return SignedIn(account_id, api_key_id, auth_time, subject=subject, name=name, email=email,
                        permissions=permissions(row, namespaces))

    def _generate_token(self, grant_type: str, client: Client, user: SignedIn | None = None,
                        scope: str | None = None, expires_in: int | None = None,
                        include_refresh_token: bool = True) -> dict[str, Any]:
        assert user is not None, "every grant here has a resource owner"
        now = int(time.time())
        ttl = min(self.settings.oidc_token_ttl_seconds,
                  max(1, user.auth_time + self.settings.oidc_session_seconds - now))
        claims = {"iss": self.issuer, "sub": user.subject, "aud": client.client_id, "client_id": client.client_id,
                  "iat": now, "exp": now + ttl, "jti": secrets.token_urlsafe(12), "scope": scope or "",
                  "auth_time": user.auth_time, "tcloud_account": user.account_id, "tcloud_api_key": user.api_key_id,
                  "permissions": list(user.permissions)}
        token: dict[str, Any] = {
            "token_type": "Bearer", "expires_in": ttl, "scope": scope or "",
            "access_token": pyjwt.encode(claims, data_plane.signing_key(self.settings).private_key,
                                         algorithm=data_plane.ALGORITHM, headers={"kid": self.kid}),
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(48)
        return token

    def access_token(self, token: str) -> AccessToken | None:
        """An access token of ours still valid, its client registered and its API key active; else None."""
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token, data_plane.signing_key(self.settings).private_key.public_key(),
                algorithms=[data_plane.ALGORITHM], issuer=self.issuer, options={"verify_aud": False,
                                                                                "require": ["exp", "iat", "sub"]})
        except pyjwt.PyJWTError:
            return None
        client = self.registered.get(str(claims.get("client_id")))
        if client is None or claims.get("aud") != client.client_id:
            return None
        user = self.signed_in(str(claims.get("tcloud_account", claims["sub"])), str(claims.get("tcloud_api_key")),
                              int(claims.get("auth_time", 0)))
        return AccessToken(claims, client, user) if user is not None else None

    # The endpoints, each called in a worker thread

    def authorization_check(self, request: Request) -> Any:
        """The grant for a valid authorization request; raises the OAuth error otherwise."""
        return self.get_consent_grant(request)

    def authorize(self, request: Request, grant: Any, user: SignedIn) -> web.Response:
        return self.create_authorization_response(request, grant_user=user, grant=grant)

    def error_redirect(self, request: Request, error: OAuth2Error) -> web.Response:
        return self.handle_error_response(request, error)

    def token(self, request: Request) -> web.Response:
        return self.create_token_response(request)

    def userinfo(self, request: Request) -> web.Response:
        return self.create_endpoint_response("userinfo", request)

    def metadata(self) -> dict[str, Any]:
        """The discovery document (OpenID Connect Discovery 1.0, RFC 8414)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + AUTHORIZE_PATH,
            "token_endpoint": self.issuer + TOKEN_PATH,
            "userinfo_endpoint": self.issuer + USERINFO_PATH,
            "jwks_uri": self.issuer + JWKS_PATH,
            "scopes_supported": list(SCOPES),
            "response_types_supported": list(RESPONSE_TYPES),
            "response_modes_supported": ["query"],
            "grant_types_supported": list(GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [data_plane.ALGORITHM],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email"],
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }


def _pem(key: data_plane.SigningKey) -> bytes:
    return key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())


_PROVIDERS: weakref.WeakKeyDictionary[web.Application, Provider] = weakref.WeakKeyDictionary()


def provider_of(app: web.Application) -> Provider:
    """The application's provider, made on first use (on the running loop)."""
    found = _PROVIDERS.get(app)
    if found is None:
        found = Provider(app[SETTINGS], app, asyncio.get_running_loop())
        _PROVIDERS[app] = found
    return found
