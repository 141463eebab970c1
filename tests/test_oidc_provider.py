"""The OpenID Connect provider the customers' Temporal UI signs in with (api/oidc.py), spoken to over HTTP as the
UI server speaks it: discovery, the sign-in page, the code flow with the client secret, PKCE, refresh, userinfo;
each way a request can be wrong answered with the right OAuth error and no token; and a user's API key signing in
that user with their access, which the Temporal server enforces on the tokens through the UI gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from authlib.oidc.discovery import OpenIDProviderMetadata
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api import ui_gateway
from api.oidc import digest
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique
from tests.oidc_support import (
    HTML,
    NATIVE_CLIENT,
    NATIVE_REDIRECT,
    OTHER_CLIENT,
    OTHER_SECRET,
    UI_CLIENT,
    Authorization,
    api_on,
    authorize,
    exchange,
    free_ports,
    oidc_settings,
    pkce_pair,
    query_of,
    sign_in_page,
    submit_key,
    user_with_key,
    verify,
)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def provider_settings(settings: Settings) -> Settings:
    api_port, ui_port = free_ports(2)
    return oidc_settings(settings, api_port=api_port, ui_port=ui_port)


@pytest_asyncio.fixture(scope="module")
async def oidc_api(provider_settings: Settings) -> AsyncIterator[TestClient]:
    async with api_on(provider_settings) as client:
        yield client


@pytest.fixture(scope="module")
def callback(provider_settings: Settings) -> str:
    return provider_settings.customer_ui_redirect_uris[0]


@pytest_asyncio.fixture(scope="module")
async def customer(oidc_api: TestClient, operator_headers: dict[str, str]) -> tuple[TestAccount, list[str]]:
    """An account with two active namespaces (what its tokens must name) and one of another account's."""
    account = await create_account(oidc_api, operator_headers, prefix="oidc")
    namespaces = [(await create_namespace(oidc_api, account, unique(p)))[0] for p in ("ui-", "uj-")]
    return account, sorted(namespaces)


@pytest_asyncio.fixture(scope="module")
async def jwks(oidc_api: TestClient) -> dict[str, Any]:
    resp = await oidc_api.get("/.well-known/jwks.json")
    body: dict[str, Any] = await resp.json()
    return body


def ui_request(callback: str, **kw: Any) -> Authorization:
    return Authorization(client_id=UI_CLIENT, redirect_uri=callback, **kw)


def no_token(body: dict[str, Any]) -> bool:
    return not {"access_token", "id_token", "refresh_token"} & set(body)


async def new_key(api: TestClient, account: TestAccount, name: str) -> tuple[str, str]:
    resp = await api.post("/cloud/api-keys", headers=account.headers, json={"spec": {"displayName": name}})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return body["token"], body["keyId"]


async def test_discovery_names_the_endpoints_and_what_they_support(oidc_api: TestClient,
                                                                   provider_settings: Settings) -> None:
    resp = await oidc_api.get("/.well-known/openid-configuration")
    assert resp.status == 200
    doc = await resp.json()
    issuer = provider_settings.oidc_issuer
    assert doc["issuer"] == issuer
    assert doc["authorization_endpoint"] == f"{issuer}/oauth2/authorize"
    assert doc["token_endpoint"] == f"{issuer}/oauth2/token"
    assert doc["userinfo_endpoint"] == f"{issuer}/oauth2/userinfo"
    assert doc["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    # authlib's own validation of the document (it wants https: the production issuer is).
    as_https = {k: v.replace("http://", "https://") if isinstance(v, str) else v for k, v in doc.items()}
    OpenIDProviderMetadata(as_https).validate()
    # Every endpoint it names is served.
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        path = doc[key].removeprefix(issuer)
        resp = await oidc_api.request("POST" if key == "token_endpoint" else "GET", path)
        assert resp.status != 404, path


async def test_the_code_flow_gives_the_ui_tokens_for_the_accounts_namespaces(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str, jwks: dict[str, Any],
        provider_settings: Settings) -> None:
    account, namespaces = customer
    issuer = provider_settings.oidc_issuer
    got = await authorize(oidc_api, account.token, ui_request(callback))
    assert got["state"] == got["sent_state"]
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback})
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == provider_settings.oidc_token_ttl_seconds
    access = verify(jwks, body["access_token"], issuer=issuer, audience=UI_CLIENT)
    # Temporal's default claim mapper reads these: the account's namespaces, and nothing else.
    assert access["sub"] == account.id
    assert sorted(access["permissions"]) == [f"{ns}:write" for ns in namespaces]
    id_token = verify(jwks, body["id_token"], issuer=issuer, audience=UI_CLIENT)
    assert id_token["nonce"] == got["sent_nonce"] and id_token["sub"] == account.id
    assert id_token["email"] == f"{account.id}@example.com" and id_token["name"] == f"Test {account.id}"
    assert "at_hash" in id_token and id_token["exp"] - id_token["iat"] == provider_settings.oidc_token_ttl_seconds

    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"sub": account.id, "name": f"Test {account.id}",
                                 "email": f"{account.id}@example.com"}

    # Refresh: new tokens (the namespaces read again), the refresh token rotated.
    status, refreshed = await exchange(oidc_api, {"grant_type": "refresh_token",
                                                  "refresh_token": body["refresh_token"]})
    assert status == 200, refreshed
    assert refreshed["refresh_token"] != body["refresh_token"]
    assert sorted(verify(jwks, refreshed["access_token"], issuer=issuer, audience=UI_CLIENT)["permissions"]) == [
        f"{ns}:write" for ns in namespaces]
    assert verify(jwks, refreshed["id_token"], issuer=issuer, audience=UI_CLIENT)["sub"] == account.id
    # The old refresh token again: refused, and the whole sign-in's tokens with it (a stolen token was replayed).
    status, again = await exchange(oidc_api, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert (status, again["error"]) == (400, "invalid_grant") and no_token(again)
    status, again = await exchange(oidc_api, {"grant_type": "refresh_token",
                                              "refresh_token": refreshed["refresh_token"]})
    assert (status, again["error"]) == (400, "invalid_grant") and no_token(again)


async def test_a_wrong_redirect_uri_is_refused_on_the_provider_and_never_followed(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    for wrong in (callback + "/", callback + "?next=/", callback.replace("/callback", "/callbacks"),
                  "http://evil.example/auth/sso/callback", callback.upper()):
        params = ui_request(wrong).params()
        status, body, fields = await sign_in_page(oidc_api, params)
        assert status == 400, (wrong, status)
        assert "invalid_request" in body and "api_key" not in body and not fields
        resp = await oidc_api.get("/oauth2/authorize", params=params, allow_redirects=False)
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    # A client that does not exist: the same, never a redirect.
    resp = await oidc_api.get("/oauth2/authorize", params={**ui_request(callback).params(), "client_id": "nosuch"},
                              allow_redirects=False)
    assert resp.status in (400, 401) and (await resp.json())["error"] == "invalid_client"
    # At the token endpoint the redirect URI must be the one the code was issued for.
    got = await authorize(oidc_api, account.token, ui_request(callback))
    status, answer = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                               "redirect_uri": callback + "/"})
    assert (status, answer["error"]) == (400, "invalid_grant") and no_token(answer)


async def test_a_replayed_code_is_refused_and_revokes_what_it_gave(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    got = await authorize(oidc_api, account.token, ui_request(callback))
    form = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": callback}
    status, first = await exchange(oidc_api, form)
    assert status == 200, first
    status, second = await exchange(oidc_api, form)
    assert (status, second["error"]) == (400, "invalid_grant") and no_token(second)
    # RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked.
    status, refreshed = await exchange(oidc_api, {"grant_type": "refresh_token",
                                                  "refresh_token": first["refresh_token"]})
    assert (status, refreshed["error"]) == (400, "invalid_grant") and no_token(refreshed)


async def test_pkce_missing_or_forged_verifier_is_refused(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    verifier, challenge = pkce_pair()
    # Missing verifier.
    got = await authorize(oidc_api, account.token, ui_request(callback, code_challenge=challenge))
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback})
    assert (status, body["error"]) == (400, "invalid_request") and no_token(body)
    # Forged verifier (well-formed, not the one of the challenge).
    got = await authorize(oidc_api, account.token, ui_request(callback, code_challenge=challenge))
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback, "code_verifier": pkce_pair()[0]})
    assert (status, body["error"]) == (400, "invalid_grant") and no_token(body)
    # The right verifier.
    got = await authorize(oidc_api, account.token, ui_request(callback, code_challenge=challenge))
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback, "code_verifier": verifier})
    assert status == 200 and "access_token" in body, body
    # A verifier without a challenge is refused too (RFC 9700 §4.8), and "plain" is not offered.
    got = await authorize(oidc_api, account.token, ui_request(callback))
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback, "code_verifier": verifier})
    assert (status, body["error"]) == (400, "invalid_request") and no_token(body)
    status, location, _ = await sign_in_page(oidc_api, ui_request(callback, code_challenge=challenge,
                                                                  code_challenge_method="plain").params())
    assert status == 302 and query_of(location)["error"] == "invalid_request"


async def test_a_public_client_must_use_pkce(oidc_api: TestClient, customer: tuple[TestAccount, list[str]]) -> None:
    account, _ = customer
    request = Authorization(client_id=NATIVE_CLIENT, redirect_uri=NATIVE_REDIRECT)
    status, location, _ = await sign_in_page(oidc_api, request.params())
    assert status == 302 and location.startswith(NATIVE_REDIRECT)
    assert query_of(location)["error"] == "invalid_request"
    verifier, challenge = pkce_pair()
    got = await authorize(oidc_api, account.token, Authorization(client_id=NATIVE_CLIENT,
                                                                 redirect_uri=NATIVE_REDIRECT,
                                                                 code_challenge=challenge))
    form = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": NATIVE_REDIRECT,
            "client_id": NATIVE_CLIENT, "code_verifier": verifier}
    status, body = await exchange(oidc_api, form, client=None)
    assert status == 200 and "access_token" in body, body


async def test_an_expired_code_is_refused(oidc_api: TestClient, customer: tuple[TestAccount, list[str]],
                                          callback: str, pool: asyncpg.Pool) -> None:
    account, _ = customer
    got = await authorize(oidc_api, account.token, ui_request(callback))
    expires = await pool.fetchval("SELECT expires_at - now() FROM oidc_codes WHERE code_hash = $1",
                                  digest(got["code"]))
    assert 0 < expires.total_seconds() <= 60  # short-lived
    # As if the code's minute had passed.
    await pool.execute("UPDATE oidc_codes SET expires_at = now() - interval '1 second' WHERE code_hash = $1",
                       digest(got["code"]))
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                             "redirect_uri": callback})
    assert (status, body["error"]) == (400, "invalid_grant") and no_token(body)


async def test_a_code_of_another_client_is_refused(oidc_api: TestClient, customer: tuple[TestAccount, list[str]],
                                                   callback: str) -> None:
    account, _ = customer
    got = await authorize(oidc_api, account.token, ui_request(callback))
    form = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": callback}
    # Another registered client, authenticated with its own secret, presents the UI's code.
    status, body = await exchange(oidc_api, form, client=(OTHER_CLIENT, OTHER_SECRET))
    assert (status, body["error"]) == (400, "invalid_grant") and no_token(body)
    # The UI's id with a wrong secret, or none at all.
    status, body = await exchange(oidc_api, form, client=(UI_CLIENT, OTHER_SECRET))
    assert (status, body["error"]) == (401, "invalid_client") and no_token(body)
    status, body = await exchange(oidc_api, {**form, "client_id": UI_CLIENT}, client=None)
    assert (status, body["error"]) == (401, "invalid_client") and no_token(body)
    # The code still belongs to the UI, which may use it.
    status, body = await exchange(oidc_api, form)
    assert status == 200, body
    # A refresh token of the UI presented by the other client.
    status, other = await exchange(oidc_api, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                                   client=(OTHER_CLIENT, OTHER_SECRET))
    assert (status, other["error"]) == (400, "invalid_grant") and no_token(other)


async def test_a_revoked_api_key_signs_in_nowhere_and_ends_its_sign_ins(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    key, key_id = await new_key(oidc_api, account, unique("ui-key-"))
    # Signed in with the key: a code, and tokens from another sign-in.
    pending = await authorize(oidc_api, key, ui_request(callback))
    got = await authorize(oidc_api, key, ui_request(callback))
    status, tokens = await exchange(oidc_api, {"grant_type": "authorization_code", "code": got["code"],
                                               "redirect_uri": callback})
    assert status == 200
    resp = await oidc_api.delete(f"/cloud/api-keys/{key_id}", headers=account.headers)
    assert resp.status in (200, 202, 204), await resp.text()

    # The sign-in page refuses the revoked key: the page again, with the reason, and no code.
    status, _, fields = await sign_in_page(oidc_api, ui_request(callback).params())
    status, page = await submit_key(oidc_api, fields, key)
    assert status == 401 and "not valid" in page and "code=" not in page
    # A code it got before: invalid_grant. Its refresh token: invalid_grant. Its access token: invalid_token.
    status, body = await exchange(oidc_api, {"grant_type": "authorization_code", "code": pending["code"],
                                             "redirect_uri": callback})
    assert (status, body["error"]) == (400, "invalid_grant") and no_token(body)
    status, body = await exchange(oidc_api, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (status, body["error"]) == (400, "invalid_grant") and no_token(body)
    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_token"


async def test_nonce_is_required_and_single_use_and_state_is_returned(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    status, location, _ = await sign_in_page(oidc_api, ui_request(callback, nonce=None).params())
    assert status == 302 and query_of(location)["error"] == "invalid_request"
    got = await authorize(oidc_api, account.token, ui_request(callback, state="the-client-state"))
    assert got["state"] == "the-client-state"
    status, location, _ = await sign_in_page(oidc_api, ui_request(callback, nonce=got["sent_nonce"]).params())
    assert status == 302 and query_of(location)["error"] == "invalid_request"
    assert query_of(location)["state"]  # the error goes back with the client's state


async def test_the_sign_in_form_only_counts_from_its_own_page(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    account, _ = customer
    _, _, fields = await sign_in_page(oidc_api, ui_request(callback).params())
    oidc_api.session.cookie_jar.clear()  # another site posting the form has no cookie of ours
    status, page = await submit_key(oidc_api, fields, account.token)
    assert status == 400 and "invalid_request" in page
    resp = await oidc_api.get("/oauth2/authorize", params=ui_request(callback).params(), headers=HTML)
    assert resp.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in resp.headers[
        "Content-Security-Policy"]


async def test_userinfo_needs_an_access_token_of_this_provider(oidc_api: TestClient,
                                                               customer: tuple[TestAccount, list[str]]) -> None:
    account, namespaces = customer
    resp = await oidc_api.get("/oauth2/userinfo")
    assert resp.status == 401
    for wrong in (account.token, "not-a-token"):
        resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {wrong}"})
        assert resp.status == 401 and (await resp.json())["error"] == "invalid_token"
    # A data-plane token (same key, not issued by the provider) is not an access token either.
    resp = await oidc_api.post(f"/cloud/namespaces/{namespaces[0]}/token", headers=account.headers)
    data_plane = (await resp.json())["token"]
    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {data_plane}"})
    assert resp.status == 401


async def test_without_pkce_only_a_confidential_client_asking_openid_with_a_nonce_gets_a_code(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str) -> None:
    """RFC 9700 §2.1.1: PKCE, or for a confidential OpenID client the nonce, must protect the code (the UI server
    sends no PKCE, tests/test_customer_ui.py shows)."""
    # No challenge, no openid scope: nothing would bind the code to the browser that asked for it.
    status, location, fields = await sign_in_page(oidc_api, ui_request(callback, scope="profile email").params())
    assert status == 302 and location.startswith(callback) and not fields
    assert query_of(location)["error"] == "invalid_request" and "code=" not in location
    # The same with PKCE: taken.
    status, _, fields = await sign_in_page(oidc_api, ui_request(callback, scope="profile email",
                                                                 code_challenge=pkce_pair()[1]).params())
    assert status == 200 and fields
    # OpenID with a nonce, no PKCE (what the UI server sends): taken.
    status, _, fields = await sign_in_page(oidc_api, ui_request(callback).params())
    assert status == 200 and fields


async def _signed_in(api: TestClient, key: str, callback: str) -> dict[str, Any]:
    got = await authorize(api, key, ui_request(callback))
    status, tokens = await exchange(api, {"grant_type": "authorization_code", "code": got["code"],
                                          "redirect_uri": callback})
    assert status == 200, tokens
    return tokens


async def _started(api: TestClient, account: TestAccount, address: str, namespace: str) -> str:
    """A workflow left running in ``namespace`` (no worker needed), started with a data-plane token of the account's
    admin key through the public door; its id."""
    resp = await api.post(f"/cloud/namespaces/{namespace}/token", headers=account.headers)
    client = await Client.connect(address, namespace=namespace, api_key=(await resp.json())["token"], tls=False)
    workflow_id = unique("ui-read-")
    for _ in range(120):  # a namespace registered a moment ago reaches every service within seconds
        try:
            await client.start_workflow("Waiting", id=workflow_id, task_queue=unique("nobody-"))
            return workflow_id
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError(f"{namespace} never served StartWorkflowExecution")


async def _refused(call: Any) -> RPCError:
    with pytest.raises(RPCError) as caught:
        await call
    return caught.value


async def test_a_users_key_signs_in_that_user_with_their_access_which_the_server_enforces(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str, jwks: dict[str, Any],
        provider_settings: Settings, temporal_server: harness.TemporalServer) -> None:
    account, (readable, other) = customer
    issuer = provider_settings.oidc_issuer
    user_id, email, key, key_id = await user_with_key(oidc_api, account, {readable: "PERMISSION_READ"})
    tokens = await _signed_in(oidc_api, key, callback)
    access = verify(jwks, tokens["access_token"], issuer=issuer, audience=UI_CLIENT)
    # The user, not the account: their id and email, and read access to the one namespace they were given.
    assert (access["sub"], access["tcloud_account"]) == (user_id, account.id)
    assert access["permissions"] == [f"{readable}:read"]
    id_token = verify(jwks, tokens["id_token"], issuer=issuer, audience=UI_CLIENT)
    assert (id_token["sub"], id_token["email"], id_token["name"]) == (user_id, email, email)
    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert resp.status == 200 and await resp.json() == {"sub": user_id, "name": email, "email": email}

    # The server enforces it, as the UI reaches it: through the UI gateway with the access token.
    workflow_id = await _started(oidc_api, account, temporal_server.public_address, readable)
    async with ui_gateway.serving(provider_settings, port=0) as port:
        through_gateway = await Client.connect(f"127.0.0.1:{port}", namespace=readable,
                                               api_key=tokens["access_token"], tls=False)
        listed = await through_gateway.workflow_service.list_namespaces(ListNamespacesRequest())
        assert [n.namespace_info.name for n in listed.namespaces] == [readable]
        handle: WorkflowHandle[Any, Any] = through_gateway.get_workflow_handle(workflow_id)
        assert (await handle.describe()).id == workflow_id  # reading works
        for write in (handle.signal("go"), handle.terminate("no"), handle.cancel()):
            err = await _refused(write)  # the server's PermissionDenied, as the gateway shows it to the UI
            assert (err.status, err.message) == (RPCStatusCode.FAILED_PRECONDITION,
                                                 "PermissionDenied: Request unauthorized."), err
        elsewhere = await Client.connect(f"127.0.0.1:{port}", namespace=other, api_key=tokens["access_token"],
                                         tls=False)
        err = await _refused(elsewhere.get_workflow_handle(workflow_id).describe())
        assert err.status == RPCStatusCode.PERMISSION_DENIED  # the workflow page keeps the server's 403
    # The same token straight at the public frontend: the server's own PermissionDenied.
    direct = await Client.connect(temporal_server.public_address, namespace=readable,
                                  api_key=tokens["access_token"], tls=False)
    err = await _refused(direct.get_workflow_handle(workflow_id).signal("go"))
    assert err.status == RPCStatusCode.PERMISSION_DENIED
    assert (await direct.get_workflow_handle(workflow_id).describe()).id == workflow_id

    # A change of the user's access shows at the next refresh: write now.
    resp = await oidc_api.post(f"/cloud/namespaces/{readable}/users/{user_id}/access", headers=account.headers,
                               json={"access": {"permission": "PERMISSION_WRITE"}})
    assert resp.status == 200, await resp.text()
    status, refreshed = await exchange(oidc_api, {"grant_type": "refresh_token",
                                                  "refresh_token": tokens["refresh_token"]})
    assert status == 200, refreshed
    assert verify(jwks, refreshed["access_token"], issuer=issuer, audience=UI_CLIENT)["permissions"] == [
        f"{readable}:write"]
    # Disabling the key ends the sign-in: no refresh, and userinfo refuses its access token.
    resp = await oidc_api.post(f"/cloud/api-keys/{key_id}", headers=account.headers, json={"spec": {
        "ownerId": user_id, "displayName": "laptop", "disabled": True}})
    assert resp.status == 200, await resp.text()
    status, body = await exchange(oidc_api, {"grant_type": "refresh_token",
                                             "refresh_token": refreshed["refresh_token"]})
    assert (status, body.get("error")) == (400, "invalid_grant") and no_token(body), body
    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert resp.status == 401


async def test_an_account_key_and_a_service_accounts_key_sign_in_as_themselves(
        oidc_api: TestClient, customer: tuple[TestAccount, list[str]], callback: str, jwks: dict[str, Any],
        provider_settings: Settings) -> None:
    account, namespaces = customer
    issuer = provider_settings.oidc_issuer
    # The account's own key (its admin service account, as every key made before users): the account, writing all.
    tokens = await _signed_in(oidc_api, account.token, callback)
    access = verify(jwks, tokens["access_token"], issuer=issuer, audience=UI_CLIENT)
    assert (access["sub"], access["tcloud_account"]) == (account.id, account.id)
    assert sorted(access["permissions"]) == [f"{ns}:write" for ns in namespaces]
    # A read-only service account: itself (its id and name, no email), reading every namespace.
    resp = await oidc_api.post("/cloud/service-accounts", headers=account.headers, json={"spec": {
        "name": "dashboards", "access": {"accountAccess": {"role": "ROLE_READ"}}}})
    assert resp.status == 200, await resp.text()
    sa_id = (await resp.json())["serviceAccountId"]
    resp = await oidc_api.post("/cloud/api-keys", headers=account.headers, json={"spec": {
        "ownerId": sa_id, "ownerType": "OWNER_TYPE_SERVICE_ACCOUNT", "displayName": "wall screen"}})
    tokens = await _signed_in(oidc_api, (await resp.json())["token"], callback)
    access = verify(jwks, tokens["access_token"], issuer=issuer, audience=UI_CLIENT)
    assert (access["sub"], sorted(access["permissions"])) == (sa_id, [f"{ns}:read" for ns in namespaces])
    resp = await oidc_api.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert await resp.json() == {"sub": sa_id, "name": "dashboards"}
    # A user without access to any namespace signs in to an empty list.
    _, _, key, _ = await user_with_key(oidc_api, account, {})
    tokens = await _signed_in(oidc_api, key, callback)
    assert verify(jwks, tokens["access_token"], issuer=issuer, audience=UI_CLIENT)["permissions"] == []
