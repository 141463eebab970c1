"""The OpenAPI document and the router stay in step: every route documented, every documented route served."""

from __future__ import annotations

import jwt
from aiohttp.test_utils import TestClient

from api import openapi
from api.jwt import ALGORITHM, ISSUER
from tests.accounts_fixtures import create_account, create_namespace, unique


async def test_every_route_is_documented_and_the_document_matches_the_router(api: TestClient) -> None:
    served = {(method.lower(), path) for method, path, _ in openapi.routes_of(api.app)}
    undocumented = sorted(f"{m.upper()} {p}" for m, p, h in
                          ((m.lower(), p, h) for m, p, h in openapi.routes_of(api.app))
                          if getattr(h, "__route_doc__", None) is None and p != "/metrics")
    assert undocumented == [], f"routes without @documented: {undocumented}"
    resp = await api.get("/openapi.json")
    doc = await resp.json()
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == served - {("get", "/metrics")}
    for path in ("/cloud/namespaces", "/cloud/operations/{async_operation_id}", "/cloud/api-keys",
                 "/cloud/account", "/admin/accounts", "/.well-known/jwks.json", "/cloud/namespaces/{namespace}/token"):
        assert path in doc["paths"], path


async def test_namespace_token_verifies_against_the_served_jwks(api: TestClient, operator_headers: dict[str, str],
                                                                worker: None) -> None:
    account = await create_account(api, operator_headers, prefix="jwt")
    ns, _ = await create_namespace(api, account, unique("data-"))
    resp = await api.post(f"/cloud/namespaces/{ns}/token", headers=account.headers)
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["token"]
    keys = jwt.PyJWKSet.from_dict(await (await api.get("/.well-known/jwks.json")).json())
    header = jwt.get_unverified_header(token)
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims = jwt.decode(token, key.key, algorithms=[ALGORITHM], issuer=ISSUER)
    # Temporal's default JWT claim mapper: "sub" a string, "permissions" of "<namespace>:<read|write|worker|admin>".
    assert claims["permissions"] == [f"{ns}:write"] and claims["sub"] == account.id
    assert claims["exp"] > claims["iat"]
    resp = await api.post("/cloud/namespaces/other.nosuch/token", headers=account.headers)
    assert resp.status == 404
