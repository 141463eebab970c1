"""The authorization matrix: every route and method of the live router, called by anonymous, a wrong key,
the operator and two accounts (Alice, Bob), each on Alice's and Bob's resources.

A route added to the router is covered without editing this file: its ``@documented(auth=...)`` says what it
must answer to whom; a path parameter the matrix cannot fill fails the test until it learns whose it is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest
import pytest_asyncio
import stripe
from aiohttp.test_utils import TestClient, TestServer
from temporalio.runtime import Runtime

from api import openapi
from api.app import create_app
from api.appkeys import SETTINGS
from api.jwt import ALGORITHM, ISSUER
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique, wait_stripe_customer
from tests.billing_helpers import complete_hours, wait_until
from tests.figures import Figures
from tests.security_support import on_server, private_temporal, running_worker

PERIOD = "2025-02"
OPERATOR_ONLY, CUSTOMER, PUBLIC, SIGNED = "operator", "customer", "none", "signature"
ACCESS_TOKEN = "access-token"  # an access token of the OpenID provider (api/oidc.py): no API key opens it
SHARED_PARAMS = {"region"}  # path parameters that name no account's resource: the same for every caller


@dataclass
class Tenant:
    """An account with one of everything the customer routes name: its ids by path parameter."""

    account: TestAccount
    ids: dict[str, str]  # path parameter -> this tenant's value
    doomed: dict[str, str]  # path parameter -> a value the tenant itself may delete


@pytest.fixture(scope="module")
def matrix_temporal(settings: Settings, temporal_factory: harness.TemporalFactory,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.TemporalServer]:
    yield from private_temporal(temporal_factory, tmp_path_factory.mktemp("matrix-temporal"),
                                settings.control_namespace)


@pytest_asyncio.fixture(scope="module")
async def matrix_api(settings: Settings, matrix_temporal: harness.TemporalServer,
                     runtime: Runtime) -> AsyncIterator[TestClient]:
    matrix_settings = on_server(settings, matrix_temporal, auth_failure_limit=10**6)
    async with running_worker(matrix_settings, runtime):
        client = TestClient(TestServer(create_app(matrix_settings)))
        await client.start_server()
        yield client
        await client.close()


async def make_tenant(api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                      stripe_api: stripe.StripeClient, prefix: str) -> Tenant:
    account = await create_account(api, operator_headers, prefix=prefix, plan="payg")
    await wait_stripe_customer(pool, account.id, within=120)
    # A card on file, added as the portal does (GET /cloud/billing/payment-method answers 404 without one).
    resp = await api.post("/cloud/billing/payment-method/setup", headers=account.headers)
    assert resp.status == 200, await resp.text()
    seti = (await resp.json())["clientSecret"].split("_secret_")[0]
    await stripe_api.v1.setup_intents.confirm_async(seti, {"payment_method_data": {  # type: ignore[typeddict-item]
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}}})
    resp = await api.post("/cloud/billing/payment-method", headers=account.headers, json={"setupIntentId": seti})
    assert resp.status == 200, await resp.text()
    await pool.execute("UPDATE accounts SET created_at = '2024-01-01' WHERE id = $1", account.id)
    ns, op = await create_namespace(api, account, unique("mx-"))
    doomed_ns, _ = await create_namespace(api, account, unique("mxd-"))
    keys = []
    for name in ("spare", "doomed"):
        resp = await api.post("/cloud/api-keys", headers=account.headers, json={"spec": {"displayName": name}})
        assert resp.status == 200, await resp.text()
        keys.append((await resp.json())["keyId"])
    users, service_accounts = [], []
    for _ in ("kept", "doomed"):
        resp = await api.post("/cloud/users", headers=account.headers, json=write_body("POST", "/cloud/users"))
        assert resp.status == 200, await resp.text()
        users.append((await resp.json())["userId"])
        resp = await api.post("/cloud/service-accounts", headers=account.headers,
                              json=write_body("POST", "/cloud/service-accounts"))
        assert resp.status == 200, await resp.text()
        service_accounts.append((await resp.json())["serviceAccountId"])
    resp = await api.post("/cloud/billing-reports", headers=account.headers,
                          json=write_body("POST", "/cloud/billing-reports"))
    assert resp.status == 200, await resp.text()
    report = (await resp.json())["billingReportId"]
    return Tenant(account, ids={"namespace": ns, "async_operation_id": op.id, "key_id": keys[0],
                                "account_id": account.id, "user_id": users[0],
                                "service_account_id": service_accounts[0], "billing_report_id": report,
                                "region": api.app[SETTINGS].cloud_region},
                  doomed={"namespace": doomed_ns, "key_id": keys[1], "user_id": users[1],
                          "service_account_id": service_accounts[1]})


@pytest_asyncio.fixture(scope="module")
async def tenants(matrix_api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                  stripe_api: stripe.StripeClient) -> tuple[Tenant, Tenant]:
    """Alice and Bob, each with namespaces, keys, an operation and an invoice from a real billing run."""
    alice = await make_tenant(matrix_api, operator_headers, pool, stripe_api, "alice")
    bob = await make_tenant(matrix_api, operator_headers, pool, stripe_api, "bob")
    await complete_hours(pool, PERIOD)
    resp = await matrix_api.post("/admin/billing/runs", headers=operator_headers, json={"period": PERIOD})
    assert resp.status == 202, await resp.text()
    for tenant in (alice, bob):
        async def invoiced(t: Tenant = tenant) -> bool:
            resp = await matrix_api.get("/cloud/billing/invoices", headers=t.account.headers)
            invoices = (await resp.json())["invoices"]
            if invoices:
                t.ids["invoice_id"] = invoices[0]["id"]
            return bool(invoices)
        await wait_until(invoiced, seconds=120, what=f"an invoice of {tenant.account.id}")
    return alice, bob


_READ_ACCESS = {"accountAccess": {"role": "ROLE_READ"}}


def write_body(method: str, path: str) -> Any:
    """A valid body for each write, so that only the caller decides the answer."""
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/admin/accounts"): {"id": unique("mxop"), "name": "Matrix", "email": "m@example.com",
                                      "plan": "payg"},
        ("POST", "/signup"): {"name": "Matrix", "email": "m@example.com"},
        ("POST", "/cloud/api-keys"): {"spec": {"displayName": "matrix"}},
        ("POST", "/cloud/namespaces"): {"spec": {"name": unique("mxn-"), "retentionDays": 3}},
        ("POST", "/cloud/namespaces/{namespace}"): {"spec": {"retentionDays": 5}},
        ("POST", "/cloud/api-keys/{key_id}"): {"spec": {"displayName": "matrix"}},
        ("POST", "/cloud/users"): {"spec": {"email": f"{unique('mx')}@example.com", "access": _READ_ACCESS}},
        ("POST", "/cloud/users/{user_id}"): {"spec": {"email": "mx-updated@example.com", "access": _READ_ACCESS}},
        ("POST", "/cloud/namespaces/{namespace}/users/{user_id}/access"): {"access": {"permission": "PERMISSION_READ"}},
        ("POST", "/cloud/service-accounts"): {"spec": {"name": unique("mx-"), "access": _READ_ACCESS}},
        ("POST", "/cloud/service-accounts/{service_account_id}"): {"spec": {"name": "mx", "access": _READ_ACCESS}},
        ("POST", "/cloud/namespaces/{namespace}/service-accounts/{service_account_id}/access"): {
            "access": {"permission": "PERMISSION_WRITE"}},
        ("PUT", "/cloud/billing/alerts"): {"thresholds_cents": [100_000]},
        ("POST", "/cloud/billing-reports"): {"spec": {"startTimeInclusive": "2025-02-01T00:00:00Z",
                                                      "endTimeExclusive": "2025-03-01T00:00:00Z"}},
        ("POST", "/admin/billing/runs"): {"period": PERIOD},
        ("POST", "/backups"): {},
        ("POST", "/admin/accounts/{account_id}/suspend"): {"reason": "matrix"},
        ("POST", "/webhooks/stripe"): {"type": "invoice.paid"},
    }
    return bodies.get((method, path), {} if method in ("POST", "PUT", "PATCH") else None)


def fill(path: str, values: dict[str, str]) -> str:
    missing = [p for p in openapi._path_params(path) if p not in values]
    assert not missing, f"{path}: the matrix does not know whose {missing} is: add it to the tenants' ids"
    return path.format(**{p: values[p] for p in openapi._path_params(path)})


@dataclass
class Cell:
    who: str
    method: str
    path: str
    status: int
    body: bytes


async def call(api: TestClient, who: str, headers: dict[str, str], method: str, template: str,
               values: dict[str, str]) -> Cell:
    path = fill(template, values)
    resp = await api.request(method, path, headers=headers, json=write_body(method, template))
    return Cell(who, method, path, resp.status, await resp.read())


def route_table(api: TestClient) -> list[tuple[str, str, str]]:
    """(method, path, auth) of every route; DELETEs last, so the owner's own deletes come after all else."""
    routes = []
    for method, path, handler in openapi.routes_of(api.app):
        doc = getattr(handler, "__route_doc__", None)
        routes.append((method, path, doc.auth if doc else PUBLIC))
    return sorted(routes, key=lambda r: r[0] == "DELETE")


def problem(cell: Cell, allowed: set[int] | None = None, refused: set[int] | None = None) -> str | None:
    """What is wrong with a cell: ``allowed`` lists the only right statuses, ``refused`` forbidden ones."""
    if cell.status >= 500:
        return f"{cell.who} {cell.method} {cell.path}: {cell.status} {cell.body[:200]!r}"
    if allowed is not None and cell.status not in allowed:
        return f"{cell.who} {cell.method} {cell.path}: {cell.status} (want {sorted(allowed)}) {cell.body[:200]!r}"
    if refused is not None and cell.status in refused:
        return f"{cell.who} {cell.method} {cell.path}: {cell.status} {cell.body[:200]!r}"
    return None


async def test_every_route_answers_each_caller_as_its_auth_says(
        matrix_api: TestClient, operator_headers: dict[str, str], tenants: tuple[Tenant, Tenant],
        figures: Figures) -> None:
    alice, bob = tenants
    operator_values = {**alice.ids, "period": PERIOD, "backup_id": "nosuch", "name": "chart.umd.min.js"}
    anonymous: dict[str, str] = {}
    wrong_key = {"Authorization": "Bearer tcsk_000000000000_wrong"}
    problems: list[str] = []
    cells = 0
    cross_account = 0
    leaks = (alice.account.id, alice.ids["namespace"], alice.doomed["namespace"], alice.ids["key_id"])
    routes = route_table(matrix_api)
    assert len(routes) >= 35
    for method, path, auth in routes:
        checks: list[tuple[Cell, str | None]] = []
        if auth == SIGNED:
            for who, headers in (("anonymous", anonymous), ("operator", operator_headers),
                                 ("alice", alice.account.headers)):
                cell = await call(matrix_api, who, headers, method, path, operator_values)
                checks.append((cell, problem(cell, allowed={400})))
        elif auth == ACCESS_TOKEN:
            for who, headers in (("anonymous", anonymous), ("wrong key", wrong_key), ("operator", operator_headers),
                                 ("alice", alice.account.headers)):
                cell = await call(matrix_api, who, headers, method, path, operator_values)
                checks.append((cell, problem(cell, allowed={401})))
        elif auth == OPERATOR_ONLY:
            for who, headers, want in (("anonymous", anonymous, 401), ("wrong key", wrong_key, 403),
                                       ("alice", alice.account.headers, 403), ("bob", bob.account.headers, 403)):
                cell = await call(matrix_api, who, headers, method, path, operator_values)
                checks.append((cell, problem(cell, allowed={want})))
            cell = await call(matrix_api, "operator", operator_headers, method, path, operator_values)
            checks.append((cell, problem(cell, refused={401, 403})))
        elif auth == CUSTOMER:
            for who, headers in (("anonymous", anonymous), ("wrong key", wrong_key), ("operator", operator_headers)):
                cell = await call(matrix_api, who, headers, method, path, alice.ids)
                checks.append((cell, problem(cell, allowed={401})))
            owned = bool(set(openapi._path_params(path)) - SHARED_PARAMS)
            # Bob on Alice's resources (and Alice on Bob's): 404, as if absent; nothing changes.
            for who, caller, owner in (("bob", bob, alice), ("alice", alice, bob)):
                if owned:
                    cell = await call(matrix_api, f"{who} on the other's", caller.account.headers, method, path,
                                      owner.ids)
                    checks.append((cell, problem(cell, allowed={404})))
                    cross_account += 1
            # Each on its own: allowed, and nothing of the other account in the answer.
            for who, caller in (("bob", bob), ("alice", alice)):
                values = {**caller.ids, **caller.doomed} if method == "DELETE" else caller.ids
                cell = await call(matrix_api, f"{who} on own", caller.account.headers, method, path, values)
                found = problem(cell, refused={401, 403, 404})
                if found is None and who == "bob" and any(v.encode() in cell.body for v in leaks):
                    found = f"bob {method} {cell.path} shows Alice's ids: {cell.body[:300]!r}"
                checks.append((cell, found))
        else:  # public: reachable by all, no 5xx, nothing of an account in the answer
            for who, headers in (("anonymous", anonymous), ("bob", bob.account.headers),
                                 ("operator", operator_headers)):
                cell = await call(matrix_api, who, headers, method, path, operator_values)
                found = problem(cell, refused={401, 403})
                if found is None and any(v.encode() in cell.body for v in leaks):
                    found = f"public {method} {cell.path} shows Alice's ids"
                checks.append((cell, found))
        cells += len(checks)
        problems += [p for _, p in checks if p]
    figures.add("matrix cells checked", cells)
    print(f"authorization matrix: {len(routes)} routes, {cells} cells, {cross_account} cross-account")
    assert problems == [], "\n".join(problems)
    assert cross_account >= 2 * 7, "too few routes on owned resources: did the router lose them?"

    # After every cross-account attempt Alice's resources are hers and unchanged; her own deletes went through.
    resp = await matrix_api.get(f"/cloud/namespaces/{alice.ids['namespace']}", headers=alice.account.headers)
    assert resp.status == 200
    assert (await resp.json())["namespace"]["spec"]["retentionDays"] == 5  # her own update, not Bob's
    resp = await matrix_api.get("/cloud/api-keys", headers=alice.account.headers)
    listed = {k["id"] for k in (await resp.json())["apiKeys"]}
    assert alice.ids["key_id"] in listed and alice.doomed["key_id"] not in listed
    assert alice.account.key_id in listed


async def test_a_namespace_token_carries_that_namespace_only(matrix_api: TestClient,
                                                             tenants: tuple[Tenant, Tenant]) -> None:
    alice, bob = tenants
    keys = jwt.PyJWKSet.from_dict(await (await matrix_api.get("/.well-known/jwks.json")).json())
    for tenant in (alice, bob):
        ns = tenant.ids["namespace"]
        resp = await matrix_api.post(f"/cloud/namespaces/{ns}/token", headers=tenant.account.headers)
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["token"]
        key = next(k for k in keys.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
        claims = jwt.decode(token, key.key, algorithms=[ALGORITHM], issuer=ISSUER)
        assert claims["permissions"] == [f"{ns}:write"], claims
        assert claims["sub"] == tenant.account.id
        others = {alice.ids["namespace"], bob.ids["namespace"], alice.doomed["namespace"],
                  bob.doomed["namespace"]} - {ns}
        assert not any(other in json.dumps(claims) for other in others)
