"""Accounts and API keys on the real parts: operator routes, the Stripe customer on localstripe, keys shown once."""

from __future__ import annotations

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import CreateApiKeyResponse, GetAccountResponse, GetApiKeysResponse
from temporalio.api.cloud.resource.v1 import ResourceState
from temporalio.client import Client

from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import create_account, unique, wait_stripe_customer
from workflows.accounts import AccountSetupInput, AccountSetupWorkflow, account_setup_workflow_id


async def stripe_customers_of(stripe_api: stripe.StripeClient, account_id: str) -> list[str]:
    """Every customer on localstripe whose metadata names ``account_id``."""
    page = await stripe_api.v1.customers.list_async({"limit": 100})
    return [c.id async for c in page.auto_paging_iter()
            if c.metadata and c.metadata.to_dict().get("account_id") == account_id]


async def test_operator_creates_an_account_with_one_stripe_customer(
        api: TestClient, operator_headers: dict[str, str], worker: None, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient) -> None:
    account = await create_account(api, operator_headers, prefix="acme")
    customer = await wait_stripe_customer(pool, account.id)
    assert await stripe_customers_of(stripe_api, account.id) == [customer]
    stored = await pool.fetchrow("SELECT prefix, secret_hash FROM api_keys WHERE id = $1", account.key_id)
    assert account.token not in (stored["prefix"], stored["secret_hash"].hex())

    resp = await api.get("/cloud/account", headers=account.headers)
    got = Parse(await resp.text(), GetAccountResponse()).account
    assert (got.id, got.state) == (account.id, ResourceState.RESOURCE_STATE_ACTIVE)

    resp = await api.get(f"/admin/accounts/{account.id}", headers=operator_headers)
    view = await resp.json()
    assert (view["stripeCustomerId"], view["plan"], view["status"]) == (customer, "essentials", "active")
    resp = await api.get("/admin/accounts", headers=operator_headers)
    assert account.id in [a["id"] for a in (await resp.json())["accounts"]]


async def test_account_id_is_derived_from_the_name_when_absent(api: TestClient, operator_headers: dict[str, str],
                                                               worker: None) -> None:
    name = "Initech " + unique("")
    resp = await api.post("/admin/accounts", headers=operator_headers, json={"name": name, "email": "a@initech.io"})
    assert resp.status == 201
    assert (await resp.json())["account"]["id"] == name.lower().replace(" ", "")
    resp = await api.post("/admin/accounts", headers=operator_headers, json={"name": name, "email": "b@initech.io"})
    second = (await resp.json())["account"]["id"]
    assert resp.status == 201 and second.startswith("initech") and second != name.lower().replace(" ", "")


async def test_stripe_customer_is_found_not_duplicated_after_a_crash_between_create_and_record(
        api: TestClient, operator_headers: dict[str, str], worker: None, pool: asyncpg.Pool,
        stripe_api: stripe.StripeClient, temporal_client: Client, settings: Settings) -> None:
    account_id = unique("crash")
    await pool.execute(
        """INSERT INTO accounts (id, name, email, stripe_customer_requested_at)
           VALUES ($1, 'Crash Co', 'c@crash.co', now() - interval '1 minute')""", account_id)
    # The earlier attempt created the customer, then died before recording it.
    orphan = await stripe_api.v1.customers.create_async({"email": "c@crash.co", "metadata": {"account_id": account_id}})
    result = await temporal_client.execute_workflow(
        AccountSetupWorkflow.run, AccountSetupInput(account_id), id=account_setup_workflow_id(account_id),
        task_queue=settings.task_queue)
    assert result.stripe_customer_id == orphan.id
    assert await stripe_customers_of(stripe_api, account_id) == [orphan.id]
    assert await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id) == orphan.id


@pytest.mark.parametrize(("body", "status"), [
    ({"name": "X Corp", "email": "not-an-email"}, 400),
    ({"name": "", "email": "a@b.io"}, 400),
    ({"name": "X Corp", "email": "a@b.io", "id": "Bad-Id"}, 400),
    ({"name": "X Corp", "email": "a@b.io", "id": "ab"}, 400),
    ({"name": "X Corp", "email": "a@b.io", "plan": "gold"}, 400),
    ({"name": "X Corp", "email": "a@b.io", "admin": True}, 400),
    ({"name": 5, "email": "a@b.io"}, 400),
])
async def test_bad_account_requests_get_a_json_400(api: TestClient, operator_headers: dict[str, str],
                                                   body: dict, status: int) -> None:  # type: ignore[type-arg]
    resp = await api.post("/admin/accounts", headers=operator_headers, json=body)
    assert resp.status == status
    assert (await resp.json())["code"] == status


async def test_duplicate_account_id_answers_409(api: TestClient, operator_headers: dict[str, str],
                                                worker: None) -> None:
    account = await create_account(api, operator_headers, prefix="twice")
    resp = await api.post("/admin/accounts", headers=operator_headers,
                          json={"id": account.id, "name": "Again", "email": "a@b.io"})
    assert resp.status == 409


async def test_admin_routes_refuse_customer_keys_and_signup_is_off(api: TestClient, operator_headers: dict[str, str],
                                                                   worker: None) -> None:
    account = await create_account(api, operator_headers, prefix="cust")
    for method, path in (("GET", "/admin/accounts"), ("POST", "/admin/accounts"),
                         ("GET", f"/admin/accounts/{account.id}"), ("POST", f"/admin/accounts/{account.id}/suspend"),
                         ("POST", f"/admin/accounts/{account.id}/resume")):
        resp = await api.request(method, path, headers=account.headers, json={})
        assert resp.status == 403, (method, path)
        resp = await api.request(method, path, json={})
        assert resp.status == 401, (method, path)
    resp = await api.post("/signup", json={"name": "Walk In", "email": "w@in.io"})
    assert resp.status == 404 and "disabled" in (await resp.json())["message"]
    resp = await api.get("/admin/accounts/nosuchacct", headers=operator_headers)
    assert resp.status == 404


async def test_api_keys_are_shown_once_listed_without_token_and_revocable(
        api: TestClient, operator_headers: dict[str, str], worker: None) -> None:
    account = await create_account(api, operator_headers, prefix="keys")
    resp = await api.post("/cloud/api-keys", headers=account.headers,
                          json={"spec": {"displayName": "ci", "description": "for CI",
                                         "expiryTime": "2099-01-01T00:00:00Z"}})
    assert resp.status == 200, await resp.text()
    created = Parse(await resp.text(), CreateApiKeyResponse())
    second = {"Authorization": f"Bearer {created.token}"}
    assert (await api.get("/cloud/account", headers=second)).status == 200

    resp = await api.get("/cloud/api-keys", headers=account.headers)
    text = await resp.text()
    listed = Parse(text, GetApiKeysResponse()).api_keys
    assert {k.id for k in listed} == {account.key_id, created.key_id}
    assert created.token not in text and account.token not in text
    assert next(k for k in listed if k.id == created.key_id).spec.display_name == "ci"

    assert (await api.delete(f"/cloud/api-keys/{created.key_id}", headers=account.headers)).status == 200
    assert (await api.get("/cloud/account", headers=second)).status == 401
    resp = await api.delete(f"/cloud/api-keys/{account.key_id}", headers=account.headers)
    assert resp.status == 409, "the last active key stays"
    assert (await api.delete("/cloud/api-keys/key-nope", headers=account.headers)).status == 404
    for body in ({"spec": {"displayName": "x"}, "extra": 1}, {"spec": {"ownerId": "someoneelse"}},
                 {"spec": {"expiryTime": "yesterday"}}, {"spec": {"expiryTime": "2001-01-01T00:00:00Z"}},
                 {"spec": {"ownerType": "OWNER_TYPE_USER"}}):  # its own owner is a service account
        resp = await api.post("/cloud/api-keys", headers=account.headers, json=body)
        assert resp.status == 400, body


async def test_self_serve_signup_when_enabled(settings: Settings, worker: None, pool: asyncpg.Pool) -> None:
    async with harness.api_client(settings.model_copy(update={"signup_enabled": True})) as client:
        resp = await client.post("/signup", json={"name": "Walk In " + unique(""), "email": "w@in.io"})
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["account"]["plan"] == "essentials"
        headers = {"Authorization": f"Bearer {body['apiKey']['token']}"}
        assert (await client.get("/cloud/account", headers=headers)).status == 200
        await wait_stripe_customer(pool, body["account"]["id"])
        resp = await client.post("/signup", json={"name": "Walk In", "email": "w@in.io", "plan": "business"})
        assert resp.status == 400, "signup cannot choose a plan"
