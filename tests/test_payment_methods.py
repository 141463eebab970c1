"""The card on file, against the real API, worker, Temporal and the Stripe fake (localstripe): a SetupIntent made by
the API and confirmed as Stripe.js would, the card kept and made the Stripe customer's default; another account's or
an unconfirmed SetupIntent refused; the webhooks that keep the table in step; the portal's card form in Chromium
(localstripe's stand-in for Stripe.js); and a suspended account that adds a good card, pays and resumes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from temporalio.client import Client

from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.billing_helpers import (
    GOOD_CARD,
    TestAccount,
    customer_headers,
    make_account,
    succeeded_charges,
    wait_until,
)
from tests.browser import browser, screenshot
from tests.test_billing_dunning import past_due

CARD = {"number": GOOD_CARD, "exp_month": 11, "exp_year": 2034, "cvc": "123"}


async def new_customer(pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> tuple[TestAccount, dict[str, str]]:
    account = await make_account(pool, stripe_api, card=None, account_id=None)
    return account, await customer_headers(pool, account.id)


async def setup_intent(api: TestClient, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    resp = await api.post("/cloud/billing/payment-method/setup", headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    return body["clientSecret"].split("_secret_")[0], body


async def confirm(stripe_api: stripe.StripeClient, seti: str, card: dict[str, Any] = CARD) -> None:
    """What Stripe.js' confirmCardSetup does in the browser."""
    await stripe_api.v1.setup_intents.confirm_async(
        seti, {"payment_method_data": {"type": "card", "card": dict(card)}})  # type: ignore[typeddict-item]


async def default_payment_method(stripe_api: stripe.StripeClient, customer: str) -> str | None:
    cus = (await stripe_api.v1.customers.retrieve_async(customer)).to_dict()
    return (cus.get("invoice_settings") or {}).get("default_payment_method")


def signed(payload: str, settings: Settings) -> dict[str, str]:
    ts = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(f"{ts}.{payload}",
                                                     settings.stripe_webhook_secret.get_secret_value())
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={sig}"}


async def test_customer_adds_a_card_through_a_setup_intent(
        api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, settings: Settings) -> None:
    account, headers = await new_customer(pool, stripe_api)
    assert (await api.get("/cloud/billing/payment-method", headers=headers)).status == 404

    seti, setup = await setup_intent(api, headers)
    assert setup["publishableKey"] == settings.stripe_publishable_key
    assert setup["stripeJsUrl"] == f"{settings.stripe_api_base}/js.stripe.com/v3/"
    intent = (await stripe_api.v1.setup_intents.retrieve_async(seti)).to_dict()
    assert (intent["customer"], intent["usage"], intent["payment_method_types"]) == \
        (account.customer, "off_session", ["card"])

    await confirm(stripe_api, seti)
    resp = await api.post("/cloud/billing/payment-method", headers=headers, json={"setupIntentId": seti})
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["brand"], body["last4"], body["expMonth"], body["expYear"]) == ("visa", "4242", 11, 2034)
    assert body["retryingInvoices"] == []
    got = await api.get("/cloud/billing/payment-method", headers=headers)
    assert got.status == 200 and (await got.json())["last4"] == "4242"

    pm_id = (await stripe_api.v1.setup_intents.retrieve_async(seti)).payment_method
    assert await default_payment_method(stripe_api, account.customer) == pm_id
    assert (await stripe_api.v1.payment_methods.retrieve_async(str(pm_id))).customer == account.customer
    row = await pool.fetchrow("SELECT * FROM payment_methods WHERE account_id = $1", account.id)
    assert row["stripe_payment_method_id"] == pm_id and "number" not in dict(row)

    # The same SetupIntent again changes nothing; a new card replaces the one on file.
    again = await api.post("/cloud/billing/payment-method", headers=headers, json={"setupIntentId": seti})
    assert again.status == 200
    seti2, _ = await setup_intent(api, headers)
    await confirm(stripe_api, seti2, {**CARD, "number": "5555555555554444", "exp_year": 2036})
    resp = await api.post("/cloud/billing/payment-method", headers=headers, json={"setupIntentId": seti2})
    assert resp.status == 200 and (await resp.json())["last4"] == "4444"
    assert await pool.fetchval("SELECT count(*) FROM payment_methods WHERE account_id = $1", account.id) == 1


async def test_another_accounts_or_unconfirmed_setup_intent_is_refused(
        api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    alice, alice_headers = await new_customer(pool, stripe_api)
    bob, bob_headers = await new_customer(pool, stripe_api)

    seti_bob, _ = await setup_intent(api, bob_headers)
    await confirm(stripe_api, seti_bob)
    stolen = await api.post("/cloud/billing/payment-method", headers=alice_headers, json={"setupIntentId": seti_bob})
    assert stolen.status == 404, await stolen.text()

    seti_alice, _ = await setup_intent(api, alice_headers)  # never confirmed
    early = await api.post("/cloud/billing/payment-method", headers=alice_headers,
                           json={"setupIntentId": seti_alice})
    assert early.status == 400 and "not succeeded" in (await early.json())["message"]
    await stripe_api.v1.setup_intents.cancel_async(seti_alice)
    canceled = await api.post("/cloud/billing/payment-method", headers=alice_headers,
                              json={"setupIntentId": seti_alice})
    assert canceled.status == 400

    unknown = await api.post("/cloud/billing/payment-method", headers=alice_headers,
                             json={"setupIntentId": "seti_doesnotexist"})
    assert unknown.status == 404
    malformed = await api.post("/cloud/billing/payment-method", headers=alice_headers,
                               json={"setupIntentId": "pm_123"})
    assert malformed.status == 400

    assert (await api.get("/cloud/billing/payment-method", headers=alice_headers)).status == 404
    assert await default_payment_method(stripe_api, alice.customer) is None
    assert await default_payment_method(stripe_api, bob.customer) is None


async def test_webhooks_keep_the_card_on_file_in_step(
        api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, settings: Settings) -> None:
    account, headers = await new_customer(pool, stripe_api)
    seti, _ = await setup_intent(api, headers)
    await confirm(stripe_api, seti)
    intent = (await stripe_api.v1.setup_intents.retrieve_async(seti)).to_dict()
    # The browser confirmed the card but never came back: Stripe's event records it.
    event = json.dumps({"id": "evt_seti", "object": "event", "type": "setup_intent.succeeded",
                        "data": {"object": intent}})
    for _ in range(2):  # delivered twice: the same outcome
        resp = await api.post("/webhooks/stripe", data=event, headers=signed(event, settings))
        assert resp.status == 200 and await resp.json() == {"received": True, "handled": True}
        got = await api.get("/cloud/billing/payment-method", headers=headers)
        assert got.status == 200 and (await got.json())["last4"] == "4242"
    assert await default_payment_method(stripe_api, account.customer) == intent["payment_method"]

    pm = (await stripe_api.v1.payment_methods.detach_async(intent["payment_method"])).to_dict()
    detached = json.dumps({"id": "evt_pm", "object": "event", "type": "payment_method.detached",
                           "data": {"object": pm}})
    first = await api.post("/webhooks/stripe", data=detached, headers=signed(detached, settings))
    assert await first.json() == {"received": True, "handled": True}
    assert (await api.get("/cloud/billing/payment-method", headers=headers)).status == 404
    second = await api.post("/webhooks/stripe", data=detached, headers=signed(detached, settings))
    assert second.status == 200 and await second.json() == {"received": True, "handled": False}

    # A SetupIntent of a customer that is not ours is ignored.
    stranger = await stripe_api.v1.customers.create_async({"email": "stranger@example.com"})
    other = {**intent, "customer": stranger.id}
    foreign = json.dumps({"id": "evt_x", "object": "event", "type": "setup_intent.succeeded",
                          "data": {"object": other}})
    resp = await api.post("/webhooks/stripe", data=foreign, headers=signed(foreign, settings))
    assert await resp.json() == {"received": True, "handled": False}


async def test_portal_adds_a_card_with_stripe_js(
        api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    account, headers = await new_customer(pool, stripe_api)
    token = headers["Authorization"].split(" ", 1)[1]
    async with browser() as b:
        page = await b.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(str(api.make_url("/")))
        await page.fill("#api-key", token)
        await page.click("form[data-testid=signin] button[type=submit]")
        await page.wait_for_selector("form[data-testid=create-namespace]", timeout=15000)
        await page.click("nav a[href='#/payment']")
        await page.locator("[data-testid=empty]", has_text="No card on file").wait_for(timeout=15000)
        element = page.locator("[data-testid=card-element]")
        await element.locator("input[placeholder=number]").wait_for(timeout=15000)  # Stripe.js mounted the card
        await element.locator("input[placeholder=number]").fill(GOOD_CARD)
        await element.locator("input[placeholder=exp_month]").fill("12")
        await element.locator("input[placeholder=exp_year]").fill("35")
        await element.locator("input[placeholder=cvc]").fill("123")
        await element.locator("input[placeholder=postal_code]").fill("75001")
        await page.click("form[data-testid=add-card] button[type=submit]")
        on_file = page.locator("[data-testid=card-on-file]")
        await on_file.wait_for(timeout=20000)
        assert await on_file.inner_text() == "visa •••• 4242, expires 12/2035"
        await screenshot(page, "portal-payment-method")

    row = await pool.fetchrow("SELECT * FROM payment_methods WHERE account_id = $1", account.id)
    assert (row["brand"], row["last4"], row["exp_month"], row["exp_year"]) == ("visa", "4242", 12, 2035)
    assert await default_payment_method(stripe_api, account.customer) == row["stripe_payment_method_id"]


async def test_suspended_account_adds_a_good_card_pays_and_resumes(
        worker: None, api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client, settings: Settings) -> None:
    account_id, customer, handle = await past_due(pool, stripe_api, temporal_client, settings, suspend_after_hours=0)
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "suspended"
    headers = await customer_headers(pool, account_id)

    seti, _ = await setup_intent(api, headers)  # allowed while suspended
    await confirm(stripe_api, seti)
    resp = await api.post("/cloud/billing/payment-method", headers=headers, json={"setupIntentId": seti})
    body = await resp.json()
    assert resp.status == 200, body
    period = handle.id.rsplit("/", 1)[1]
    assert body["retryingInvoices"] == [period]

    result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.state == "paid" and not result.suspended
    assert await pool.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id_for(account_id, period)) \
        == "paid"

    async def resumed() -> bool:
        return bool(await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "active")

    await wait_until(resumed, what="the account to resume")
    charges = await succeeded_charges(stripe_api, customer)
    assert len(charges) == 1
    assert charges[0]["payment_method"] == (await stripe_api.v1.setup_intents.retrieve_async(seti)).payment_method


@pytest.mark.parametrize("path", ["/cloud/billing/payment-method/setup", "/cloud/billing/payment-method"])
async def test_card_routes_need_a_customer(api: TestClient, path: str) -> None:
    resp = await api.post(path, json={"setupIntentId": "seti_x"})
    assert resp.status == 401
