"""The OpenID provider for tests: the API on a port known before it starts (its issuer URL), and the protocol
spoken by hand, the way the UI server (golang.org/x/oauth2 and go-oidc) speaks it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from api.app import create_app
from launcher import procs
from tcloud.settings import OidcClient, Settings
from tests.accounts_fixtures import TestAccount, unique

UI_CLIENT = "temporal-ui"
UI_SECRET = "ui-secret-" + secrets.token_hex(8)
OTHER_CLIENT = "other-app"
OTHER_SECRET = "other-secret-" + secrets.token_hex(8)
OTHER_REDIRECT = "http://127.0.0.1:9/other/callback"
NATIVE_CLIENT = "native-app"  # public: no secret, PKCE required
NATIVE_REDIRECT = "http://127.0.0.1:9/native/callback"


def oidc_settings(settings: Settings, *, api_port: int, ui_port: int, **more: Any) -> Settings:
    """``settings`` with the provider on ``api_port`` and the customers' UI registered at ``ui_port``, plus two
    more clients (a confidential one and a public one) for the protocol tests."""
    update: dict[str, Any] = {
        "oidc_issuer": f"http://127.0.0.1:{api_port}",
        "customer_ui_url": f"http://127.0.0.1:{ui_port}",
        "oidc_client_id": UI_CLIENT,
        "oidc_client_secret": SecretStr(UI_SECRET),
        "oidc_extra_clients": {
            OTHER_CLIENT: OidcClient(secret=SecretStr(OTHER_SECRET), redirect_uris=[OTHER_REDIRECT]),
            NATIVE_CLIENT: OidcClient(redirect_uris=[NATIVE_REDIRECT]),
        },
        **more,
    }
    return settings.model_copy(update=update)


@asynccontextmanager
async def api_on(settings: Settings) -> AsyncIterator[TestClient]:
    """The real API app listening on its issuer's port."""
    port = urlsplit(settings.oidc_issuer).port
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=port))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def free_ports(n: int) -> list[int]:
    found: list[int] = []
    while len(found) < n:
        port = procs.free_port()
        if port not in found:
            found.append(port)
    return found


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Authorization:
    """An authorization request as a client sends it."""

    client_id: str = UI_CLIENT
    redirect_uri: str = ""
    scope: str = "openid profile email"
    state: str = ""
    nonce: str | None = ""
    code_challenge: str | None = None
    code_challenge_method: str | None = "S256"

    def params(self) -> dict[str, str]:
        out = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
               "scope": self.scope, "state": self.state or secrets.token_urlsafe(16)}
        if self.nonce is not None:
            out["nonce"] = self.nonce or secrets.token_urlsafe(16)
        if self.code_challenge:
            out["code_challenge"] = self.code_challenge
            if self.code_challenge_method:
                out["code_challenge_method"] = self.code_challenge_method
        return out


HTML = {"Accept": "text/html"}
_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


async def sign_in_page(api: TestClient, params: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    """GET the authorization endpoint as a browser: status, body and the form's hidden fields."""
    import html

    resp = await api.get("/oauth2/authorize", params=params, headers=HTML, allow_redirects=False)
    body = await resp.text()
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(body)}
    return resp.status, body if resp.status != 302 else resp.headers["Location"], fields


async def submit_key(api: TestClient, fields: dict[str, str], api_key: str) -> tuple[int, str]:
    """POST the sign-in form: status and the Location (a redirect) or the page."""
    resp = await api.post("/oauth2/authorize", data={**fields, "api_key": api_key}, headers=HTML,
                          allow_redirects=False)
    return resp.status, resp.headers.get("Location", "") if resp.status == 302 else await resp.text()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def authorize(api: TestClient, api_key: str, request: Authorization) -> dict[str, str]:
    """The whole front channel: the sign-in page, the key, the redirect back; returns the redirect's parameters
    (``code`` and ``state``), with the request's ``nonce`` and ``state`` added for the caller's checks."""
    params = request.params()
    status, _, fields = await sign_in_page(api, params)
    assert status == 200, f"sign-in page answered {status}"
    status, location = await submit_key(api, fields, api_key)
    assert status == 302, f"sign-in answered {status}: {location[:300]}"
    assert location.startswith(params["redirect_uri"] + "?"), location
    return {**query_of(location), "sent_state": params["state"], "sent_nonce": params.get("nonce", "")}


async def exchange(api: TestClient, form: dict[str, str], *, client: tuple[str, str] | None = (UI_CLIENT, UI_SECRET)
                   ) -> tuple[int, dict[str, Any]]:
    """POST the token endpoint, the client authenticating with HTTP Basic as golang.org/x/oauth2 does."""
    headers = {}
    if client is not None:
        basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    resp = await api.post("/oauth2/token", data=form, headers=headers)
    return resp.status, await resp.json()


def verify(api_keys: dict[str, Any], token: str, *, issuer: str, audience: str | None) -> dict[str, Any]:
    """Check a token against the served JWKS as go-oidc does (signature by kid, issuer, audience, expiry)."""
    keys = jwt.PyJWKSet.from_dict(api_keys)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], issuer=issuer, audience=audience,
                                        options={"verify_aud": audience is not None})
    return claims


async def user_with_key(api: TestClient, account: TestAccount, access: dict[str, str], *,
                        role: str = "ROLE_DEVELOPER") -> tuple[str, str, str, str]:
    """A user of ``account`` with ``access`` (namespace: PERMISSION_*) and an API key they own:
    (user id, email, the key's token, its id)."""
    email = f"{unique('ui-user-')}@example.com"
    resp = await api.post("/cloud/users", headers=account.headers, json={"spec": {"email": email, "access": {
        "accountAccess": {"role": role},
        "namespaceAccesses": {ns: {"permission": permission} for ns, permission in access.items()}}}})
    assert resp.status == 200, await resp.text()
    user_id = (await resp.json())["userId"]
    resp = await api.post("/cloud/api-keys", headers=account.headers, json={"spec": {
        "ownerId": user_id, "ownerType": "OWNER_TYPE_USER", "displayName": "laptop"}})
    assert resp.status == 200, await resp.text()
    key = await resp.json()
    return user_id, email, key["token"], key["keyId"]
