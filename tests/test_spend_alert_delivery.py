"""Spend-alert delivery against real parts: the worker on the real Temporal server, Postgres, a webhook
receiver on a real socket and the local platform's SMTP mail sink."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from playwright.async_api import expect
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.spend_alert_delivery import DeliveryKey
from tcloud.adapters import spend_alert_delivery
from tcloud.adapters.webhook_targets import TargetRefused, check_webhook_url
from tcloud.domain.billing_period import period_of
from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.services.spend_alerts import check_account
from tcloud.settings import Settings
from tests import harness
from tests.alert_receivers import MailSink, WebhookReceiver, mail_sink, signature_valid, webhook_receiver
from tests.billing_helpers import TestAccount, customer_headers, make_account, wait_until
from tests.browser import browser, screenshot
from workflows.spend_alerts import (
    DeliveryPolicy,
    SpendAlertDeliveryWorkflow,
    SpendAlertsRun,
    SpendAlertsWorkflow,
    delivery_workflow_id,
)

FAST = DeliveryPolicy(deliver_for_seconds=60, first_retry_seconds=0.2, max_retry_seconds=1)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    with mail_sink(tmp_path_factory.mktemp("mail")) as s:
        yield s


@pytest.fixture(scope="module")
def settings(settings: Settings, sink: MailSink) -> Settings:
    """Webhooks to loopback allowed (the receivers are local); email through the mail sink."""
    return settings.model_copy(update={"alert_webhook_allow_private": True, "smtp_host": "127.0.0.1",
                                       "smtp_port": sink.port})


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(fail_first=2) as r:
        yield r


async def business_account(pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> tuple[TestAccount, dict]:
    """An account whose month-to-date estimate is its $500 minimum."""
    account = await make_account(pool, stripe_api, plan="business")
    return account, await customer_headers(pool, account.id)


async def check(client: Client, settings: Settings, policy: DeliveryPolicy = FAST):  # type: ignore[no-untyped-def]
    """The hourly check, as its Schedule starts it."""
    return await client.execute_workflow(
        SpendAlertsWorkflow.run, SpendAlertsRun(delivery=policy), id=f"billing-spend-alerts-test-{uuid.uuid4()}",
        task_queue=settings.task_queue)


async def deliveries(api: TestClient, headers: dict) -> dict[str, dict]:
    body = await (await api.get("/cloud/billing/alerts", headers=headers)).json()
    return {d["channel"]: d for n in body["notifications"] for d in n["deliveries"]}


async def settled(api: TestClient, headers: dict, channels: set[str]) -> dict[str, dict]:
    async def done() -> bool:
        got = await deliveries(api, headers)
        return set(got) == channels and all(d["state"] != "pending" for d in got.values())

    await wait_until(done, seconds=60, what=f"deliveries over {channels}")
    return await deliveries(api, headers)


async def test_an_alert_reaches_the_webhook_and_the_inbox_once(
        worker: None, api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client, settings: Settings, receiver: WebhookReceiver, sink: MailSink) -> None:
    account, headers = await business_account(pool, stripe_api)
    email = f"billing+{account.id}@acme.test"
    resp = await api.put("/cloud/billing/alerts", headers=headers, json={
        "thresholds_cents": [40_000, 60_000], "webhook_url": receiver.url(), "email": email})
    assert resp.status == 200, await resp.text()
    configured = await resp.json()
    secret = configured["webhook_secret"]
    assert secret.startswith("whsec_") and configured["webhook_url"] == receiver.url()
    assert configured["email"] == email and configured["notifications"] == []

    # Checked twice: the $400 threshold is reached once; the receiver fails twice before it accepts.
    first_run = await temporal_client.start_workflow(
        SpendAlertsWorkflow.run, SpendAlertsRun(delivery=FAST), id=f"billing-spend-alerts-test-{uuid.uuid4()}",
        task_queue=settings.task_queue)
    first, second = await first_run.result(), await check(temporal_client, settings)
    assert first.notified.get(account.id) == [40_000] and account.id not in second.notified
    done = await settled(api, headers, {"webhook", "email"})
    assert done["webhook"]["state"] == "delivered" and done["webhook"]["attempts"] == 3
    assert done["email"]["state"] == "delivered" and done["email"]["attempts"] == 1
    assert done["webhook"]["target"] == receiver.url() and done["email"]["target"] == email

    # One event, sent three times with the same id, signed each time; one 2xx.
    assert [r.answered for r in receiver.requests] == [503, 503, 200]
    event_id = f"spend_alert.{account.id}.{period_of(datetime.now(UTC))}.40000"
    for request in receiver.requests:
        assert request.headers["Tcloud-Event-Id"] == event_id
        assert signature_valid(request.headers["Tcloud-Signature"], request.body, secret)
        assert not signature_valid(request.headers["Tcloud-Signature"], request.body + b" ", secret)
    event = json.loads(receiver.requests[-1].body)
    assert event == {**event, "id": event_id, "type": "spend_alert.threshold_reached", "account_id": account.id,
                     "threshold_cents": 40_000, "estimate_cents": 50_000, "threshold": "400.00",
                     "estimate": "500.00", "currency": "usd"}

    mine = [m for m in sink.messages() if m["To"] == email]
    assert len(mine) == 1
    assert mine[0]["Message-ID"] == f"<{event_id}@tcloud>"
    assert "$400.00" in mine[0]["Subject"] and "$500.00" in mine[0].get_payload()

    # A later check finds nothing owed: no new workflow, no new request.
    third = await check(temporal_client, settings)
    assert third.deliveries_started == 0 and len(receiver.requests) == 3
    # Were the record lost (a restore from an older backup, say), the finished workflow refuses a second send.
    await pool.execute("UPDATE spend_alert_deliveries SET state = 'pending', dispatched_at = NULL "
                       "WHERE account_id = $1", account.id)
    fourth = await check(temporal_client, settings)
    assert fourth.deliveries_started == 0 and len(receiver.requests) == 3
    assert len([m for m in sink.messages() if m["To"] == email]) == 1
    period = period_of(datetime.now(UTC))
    replayer = Replayer(workflows=[SpendAlertsWorkflow, SpendAlertDeliveryWorkflow], data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(await first_run.fetch_history())
    for channel in ("webhook", "email"):
        handle = temporal_client.get_workflow_handle(
            delivery_workflow_id(DeliveryKey(account.id, period, 40_000, channel)))
        await replayer.replay_workflow(await handle.fetch_history())


async def test_an_unreachable_webhook_fails_after_its_window(
        worker: None, api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client, settings: Settings) -> None:
    _, headers = await business_account(pool, stripe_api)
    dead = f"http://127.0.0.1:{harness.procs.free_port()}/hook"  # nothing listens
    assert (await api.put("/cloud/billing/alerts", headers=headers,
                          json={"thresholds_cents": [10_000], "webhook_url": dead})).status == 200
    await check(temporal_client, settings, DeliveryPolicy(deliver_for_seconds=3, first_retry_seconds=0.2,
                                                          max_retry_seconds=0.5))
    failed = (await settled(api, headers, {"webhook"}))["webhook"]
    assert failed["state"] == "failed" and failed["attempts"] >= 2, failed
    assert "127.0.0.1" in failed["last_error"], failed
    # Failed stays failed: the next check starts nothing for it.
    assert (await check(temporal_client, settings)).deliveries_started == 0


async def test_removing_the_webhook_before_delivery_fails_it_visibly(
        worker: None, api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client, settings: Settings) -> None:
    account, headers = await business_account(pool, stripe_api)
    async with webhook_receiver() as receiver:
        assert (await api.put("/cloud/billing/alerts", headers=headers,
                              json={"thresholds_cents": [10_000], "webhook_url": receiver.url()})).status == 200
        # Recorded with its delivery (as the hourly check does), then the webhook is removed before it is sent.
        assert await check_account(pool, account.id, period_of(datetime.now(UTC))) == [10_000]
        assert (await api.put("/cloud/billing/alerts", headers=headers,
                              json={"thresholds_cents": [10_000]})).status == 200
        assert (await check(temporal_client, settings)).deliveries_started >= 1
        failed = (await settled(api, headers, {"webhook"}))["webhook"]
        assert failed["state"] == "failed" and "removed its webhook" in failed["last_error"], failed
        assert receiver.requests == []


async def test_the_webhook_secret_is_kept_until_rotated(api: TestClient, pool: asyncpg.Pool,
                                                        stripe_api: stripe.StripeClient) -> None:
    _, headers = await business_account(pool, stripe_api)
    body = {"thresholds_cents": [500_000], "webhook_url": "http://127.0.0.1:9/a"}
    first = (await (await api.put("/cloud/billing/alerts", headers=headers, json=body)).json())["webhook_secret"]
    moved = {**body, "webhook_url": "http://127.0.0.1:9/b"}
    assert (await (await api.put("/cloud/billing/alerts", headers=headers, json=moved)).json())[
        "webhook_secret"] == first
    rotated = await (await api.put("/cloud/billing/alerts", headers=headers,
                                   json={**moved, "rotate_webhook_secret": True})).json()
    assert rotated["webhook_secret"] not in (None, first)
    assert (await (await api.get("/cloud/billing/alerts", headers=headers)).json())["webhook_secret"] == \
        rotated["webhook_secret"]
    cleared = await (await api.put("/cloud/billing/alerts", headers=headers, json={"thresholds_cents": []})).json()
    assert cleared == {**cleared, "webhook_url": None, "webhook_secret": None, "email": None}


@pytest.mark.parametrize("url", [
    "http://hooks.acme.test/x",            # not https
    "https://127.0.0.1/x", "https://10.1.2.3/x", "https://172.16.0.9/x", "https://192.168.1.1/x",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://[fd00::1]/x",
    "https://[::ffff:127.0.0.1]/x", "https://localhost/x", "https://api.localhost/x", "https://0.0.0.0/x",
    "https://user:pw@hooks.acme.test/x", "ftp://hooks.acme.test/x", "https:///x", "https://[::1/x",
    "https://hooks.acme.test:99999/x", "https://hooks acme.test/x", "hooks.acme.test/x", "",
])
async def test_webhook_urls_that_could_reach_the_platform_are_refused(
        url: str, settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    _, headers = await business_account(pool, stripe_api)
    strict = settings.model_copy(update={"alert_webhook_allow_private": False})
    async with harness.api_client(strict) as api:
        resp = await api.put("/cloud/billing/alerts", headers=headers,
                             json={"thresholds_cents": [100], "webhook_url": url})
        assert resp.status == 400, (url, await resp.text())
        assert "webhook_url" in (await resp.json())["message"]


def test_public_https_urls_are_accepted() -> None:
    for url in ("https://hooks.acme.test/spend", "https://8.8.8.8/x", "https://[2606:4700::1111]:8443/x"):
        assert check_webhook_url(url, allow_private=False) == url


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(receiver: WebhookReceiver) -> None:
    """Checked on the resolved address when sending, so DNS cannot point a public-looking name inside."""
    n = spend_alert_delivery.Notification("acme", "2026-12", 100, 200, 0)
    for url in (f"http://localhost:{receiver.port}/x", f"http://127.0.0.1:{receiver.port}/x"):
        with pytest.raises(TargetRefused):
            await spend_alert_delivery.send_webhook(n, url=url, secret="s", allow_private=False)
    assert receiver.requests == []


async def test_bad_alert_bodies_answer_400(api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
                                           settings: Settings) -> None:
    _, headers = await business_account(pool, stripe_api)
    for body in ({"thresholds_cents": [100], "email": "not an address"},
                 {"thresholds_cents": [100], "email": "ops@acme.test\r\nBcc: all@acme.test"},
                 {"thresholds_cents": [100], "webhook_url": 5},
                 {"thresholds_cents": [100], "webhook_url": "https://" + "a" * 2100 + ".test/"},
                 {"thresholds_cents": [100], "rotate_webhook_secret": "yes please"}):
        resp = await api.put("/cloud/billing/alerts", headers=headers, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["message"]
    async with harness.api_client(settings.model_copy(update={"smtp_host": None})) as no_mail:
        resp = await no_mail.put("/cloud/billing/alerts", headers=headers,
                                 json={"thresholds_cents": [100], "email": "ops@acme.test"})
        assert resp.status == 400 and "SMTP" in (await resp.json())["message"]



async def test_the_portal_sets_where_alerts_go_and_shows_each_delivery(
        worker: None, api: TestClient, pool: asyncpg.Pool, stripe_api: stripe.StripeClient,
        temporal_client: Client, settings: Settings, receiver: WebhookReceiver, sink: MailSink) -> None:
    account, headers = await business_account(pool, stripe_api)
    async with browser() as b:
        page = await b.new_page()
        await page.goto(str(api.make_url("/")))
        await page.fill("#api-key", headers["Authorization"].removeprefix("Bearer "))
        await page.click("form[data-testid=signin] button[type=submit]")
        await page.click("nav a[href='#/alerts']")
        # The view has loaded its configuration (a slow machine may still be rendering the sign-in's first view).
        await expect(page.locator("main")).to_contain_text("No alert has been reached yet.", timeout=15000)
        await page.fill("#alert-amount", "250")
        await page.click("form[data-testid=create-alert] button[type=submit]")
        await expect(page.locator("[data-testid=alerts]")).to_contain_text("$250.00", timeout=15000)
        await page.fill("#alert-webhook", receiver.url())
        await page.fill("#alert-email", f"{account.id}@acme.test")
        await page.click("form[data-testid=alert-channels] button[type=submit]")
        secret = page.locator("[data-testid=webhook-secret]")
        await expect(secret).to_contain_text("whsec_", timeout=15000)
        # The thresholds survived saving the channels (PUT replaces the whole configuration).
        await expect(page.locator("[data-testid=alerts]")).to_contain_text("$250.00")

        await check(temporal_client, settings)
        await settled(api, headers, {"webhook", "email"})
        await page.reload()
        rows = page.locator("[data-testid=alert-notifications]")
        await expect(rows).to_contain_text("$250.00", timeout=15000)
        await expect(rows).to_contain_text("webhook delivered (3 tries)")
        await expect(rows).to_contain_text("email delivered")
        assert signature_valid(receiver.requests[-1].headers["Tcloud-Signature"], receiver.requests[-1].body,
                               (await secret.inner_text()).strip())
        await screenshot(page, "portal-spend-alerts")
