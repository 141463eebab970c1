"""Activities of every capability run alone in ``temporalio.testing.ActivityEnvironment``, against the real parts
they talk to (Postgres, localstripe, the Temporal server, pg_dump, a webhook receiver on a real socket).

What only this environment shows: the heartbeats an activity sends (and their details), what it leaves behind
when it is cancelled at a chosen point (a heartbeat, or while a call is in flight), that the retry after that
resumes rather than duplicates, and what ``activity.info()`` feeds (the activity logger's context).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import stripe
from aiohttp import web
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.accounts import AccountActivities, StripeCustomerInput, StripeCustomerOutput
from activities.backup import PLATFORM_DATABASE, BackupActivities, DumpInput
from activities.billing import AccountPeriod, BillingActivities
from activities.namespaces import NamespaceActivities, NamespaceRef, RegisterInput, SearchAttributesInput
from activities.spend_alert_delivery import DeliveryKey, DeliveryOutcome, SpendAlertDeliveryActivities
from activities.usage import CollectHourInput, UsageActivities
from launcher import procs
from tcloud.adapters.backups import catalog
from tcloud.adapters.backups.factory import open_store
from tcloud.domain.metering import HOUR, floor_hour
from tcloud.platform.clients import prometheus_client
from tcloud.platform.temporal import ensure_namespace, namespace_exists
from tcloud.services.invoicing import invoice_id_for
from tcloud.settings import Settings
from tests.alert_receivers import signature_valid, webhook_receiver
from tests.billing_helpers import (
    add_usage,
    make_account,
    new_account_id,
    stripe_invoices_for,
    succeeded_charges,
    wait_until,
)
from tests.usage_fixtures import create_tenant


@dataclass
class Env:
    """An ActivityEnvironment that keeps every heartbeat's details and can cancel itself at the n-th one."""

    env: ActivityEnvironment
    beats: list[tuple[Any, ...]] = field(default_factory=list)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await self.env.run(fn, *args)


def environment(*, activity_type: str = "unknown", attempt: int = 1, workflow_id: str = "test",
                cancel_at_heartbeat: int | None = None) -> Env:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(ActivityEnvironment.default_info(), activity_type=activity_type, attempt=attempt,
                                   workflow_id=workflow_id, heartbeat_timeout=timedelta(seconds=30))
    out = Env(env)

    def on_heartbeat(*details: Any) -> None:
        out.beats.append(details)
        if cancel_at_heartbeat is not None and len(out.beats) == cancel_at_heartbeat:
            env.cancel()

    env.on_heartbeat = on_heartbeat
    return out


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(4)


# --- namespaces -----------------------------------------------------------------------------------------------


async def test_a_namespace_the_server_refuses_fails_for_good_without_waiting(
        pool: asyncpg.Pool, temporal_client: Client) -> None:
    namespace = f"{unique('refused')}.{unique('acct')}"
    run = environment(activity_type="register_namespace")
    activities = NamespaceActivities(pool=pool, temporal=temporal_client)
    with pytest.raises(ApplicationError) as refused:
        await run.run(activities.register_namespace, RegisterInput(namespace, "acct", 0, "ops@acme.test"))
    # Non-retryable, with the server's reason; it never started waiting for the namespace (no heartbeat).
    assert refused.value.non_retryable
    assert refused.value.message.startswith("the Temporal server refused the namespace: "), refused.value.message
    assert run.beats == []
    assert not await namespace_exists(temporal_client, namespace)


async def test_a_delete_cancelled_while_waiting_is_not_asked_again_on_retry(
        pool: asyncpg.Pool, temporal_client: Client) -> None:
    namespace = f"{unique('bye')}.{unique('acct')}"
    await ensure_namespace(temporal_client, namespace, retention_days=1)
    activities = NamespaceActivities(pool=pool, temporal=temporal_client)

    first = environment(activity_type="delete_from_server", cancel_at_heartbeat=1)
    with pytest.raises(asyncio.CancelledError):
        await first.run(activities.delete_from_server, NamespaceRef(namespace))
    assert len(first.beats) == 1  # it had asked the server, then was cancelled while waiting

    retry = environment(activity_type="delete_from_server", attempt=2)
    asked = await retry.run(activities.delete_from_server, NamespaceRef(namespace))
    assert asked is False  # the server already had the request: the retry only waits for it
    assert not await namespace_exists(temporal_client, namespace)


async def test_search_attributes_are_added_once_and_refusals_fail_for_good(pool: asyncpg.Pool,
                                                                          temporal_client: Client) -> None:
    namespace = f"{unique('sattr')}.{unique('acct')}"
    await ensure_namespace(temporal_client, namespace, retention_days=1)
    activities = NamespaceActivities(pool=pool, temporal=temporal_client)
    wanted = SearchAttributesInput(namespace, {"OrderId": "Keyword", "Total": "Double"})
    first = environment(activity_type="namespaces.add_search_attributes")
    assert await first.run(activities.add_search_attributes, wanted) == ["OrderId", "Total"]
    retry = environment(activity_type="namespaces.add_search_attributes", attempt=2)
    assert await retry.run(activities.add_search_attributes, wanted) == []  # safe to run twice

    for attributes, reason in (({"OrderId": "Int"}, "exist on the server with another type: OrderId"),
                               ({"WorkflowId": "Keyword"}, "the Temporal server refused the search attributes: ")):
        with pytest.raises(ApplicationError) as refused:
            await environment(activity_type="namespaces.add_search_attributes").run(
                activities.add_search_attributes, SearchAttributesInput(namespace, attributes))
        assert refused.value.non_retryable and reason in refused.value.message, refused.value.message


# --- accounts -------------------------------------------------------------------------------------------------


async def stripe_customers_of(stripe_api: stripe.StripeClient, account_id: str) -> list[str]:
    page = await stripe_api.v1.customers.list_async({"limit": 100})
    return [c.id async for c in page.auto_paging_iter()
            if (c.metadata.to_dict() if c.metadata else {}).get("account_id") == account_id]


async def test_a_stripe_customer_made_by_a_lost_attempt_is_adopted_not_doubled(
        pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    """An earlier attempt created the customer and died before recording it. The next one lists Stripe's
    customers (heartbeating each); cancelled part-way it records nothing, and the one after adopts the customer."""
    account_id = new_account_id("ae")
    await pool.execute(
        """INSERT INTO accounts (id, name, email, stripe_customer_requested_at)
           VALUES ($1, $1, $1 || '@example.com', now() - interval '5 minutes')""", account_id)
    lost = await stripe_api.v1.customers.create_async({"email": f"{account_id}@example.com",
                                                       "metadata": {"account_id": account_id}})
    activities = AccountActivities(pool=pool, stripe_client=stripe_api)

    cancelled = environment(activity_type="ensure_stripe_customer", attempt=2, cancel_at_heartbeat=1)
    with pytest.raises(asyncio.CancelledError):
        await cancelled.run(activities.ensure_stripe_customer, StripeCustomerInput(account_id))
    assert await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id) is None

    retry = environment(activity_type="ensure_stripe_customer", attempt=3)
    out = await retry.run(activities.ensure_stripe_customer, StripeCustomerInput(account_id))
    assert out == StripeCustomerOutput(lost.id, created=False)
    assert len(retry.beats) >= 1  # one per customer listed
    assert await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id) == lost.id
    assert await stripe_customers_of(stripe_api, account_id) == [lost.id]


# --- usage ----------------------------------------------------------------------------------------------------


async def test_storage_collection_heartbeats_each_namespace_it_measures(
        settings: Settings, pool: asyncpg.Pool, temporal_client: Client) -> None:
    tenant = await create_tenant(pool, temporal_client)
    ghost = f"{unique('gone')}.{tenant.account_id}"  # owned in the ledger's eyes, unknown to the server
    await pool.execute("INSERT INTO namespace_ownership (namespace, account_id, valid_from) VALUES ($1, $2, $3)",
                       ghost, tenant.account_id, datetime.now(UTC) - timedelta(days=1))
    hour = floor_hour(datetime.now(UTC)) - HOUR
    activities = UsageActivities(settings=settings, pool=pool, prometheus=prometheus_client(settings),
                                 temporal=temporal_client)

    first = environment(activity_type="collect_storage_hour")
    out = await first.run(activities.collect_storage_hour, CollectHourInput("storage", hour))
    assert out.written and out.collector == "storage" and out.hour == hour
    # One heartbeat per namespace measured on the server, naming it; none for the one the server does not know.
    measured = sorted(details[0] for details in first.beats)
    assert measured == sorted([settings.control_namespace, tenant.namespace])
    assert await pool.fetchval("SELECT 1 FROM usage_collected_hours WHERE collector = 'storage' AND hour = $1",
                               hour) == 1

    # Run again (a retry after a lost completion): nothing measured, nothing written.
    again = environment(activity_type="collect_storage_hour", attempt=2)
    repeat = await again.run(activities.collect_storage_hour, CollectHourInput("storage", hour))
    assert repeat.written is False and again.beats == []


# --- billing --------------------------------------------------------------------------------------------------

PERIOD = "2025-06"
GB = 10**9


async def test_an_invoice_cancelled_midway_through_stripe_resumes_without_duplicates(
        pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> None:
    """Cancelled after its second Stripe object; the retry finds what was made (the items, one invoice),
    finishes, and charges once."""
    account = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, account.id, PERIOD, actions=11_250_000, active_byte_hours=100 * GB,
                    retained_byte_hours=1000 * GB, namespaces=2)
    activities = BillingActivities(pool=pool, stripe_client=stripe_api)
    invoice_id = invoice_id_for(account.id, PERIOD)

    cancelled = environment(activity_type="billing.make_invoice", cancel_at_heartbeat=2)
    with pytest.raises(asyncio.CancelledError):
        await cancelled.run(activities.make_invoice, AccountPeriod(account.id, PERIOD))
    assert len(cancelled.beats) == 2
    row = await pool.fetchrow("SELECT status, stripe_invoice_id FROM invoices WHERE id = $1", invoice_id)
    assert row["status"] == "draft" and row["stripe_invoice_id"] is None
    assert await stripe_invoices_for(stripe_api, account.customer, invoice_id) == []

    retry = environment(activity_type="billing.make_invoice", attempt=2)
    outcome = await retry.run(activities.make_invoice, AccountPeriod(account.id, PERIOD))
    assert outcome.payment is not None and outcome.payment.status == "paid" and outcome.payment.attempts == 1
    total = outcome.summary.total_cents
    assert total > 0
    [stripe_invoice] = await stripe_invoices_for(stripe_api, account.customer, invoice_id)
    assert stripe_invoice["total"] == total and stripe_invoice["status"] == "paid"
    lines = await pool.fetch("SELECT line_no, amount_cents FROM invoice_lines WHERE invoice_id = $1 "
                             "AND amount_cents > 0", invoice_id)
    items = sorted((line["metadata"]["tcloud_line"], line["amount"]) for line in stripe_invoice["lines"]["data"]
                   if line.get("metadata"))
    assert items == sorted((str(r["line_no"]), r["amount_cents"]) for r in lines)
    assert [c["amount"] for c in await succeeded_charges(stripe_api, account.customer)] == [total]
    subscriptions = await stripe_api.v1.subscriptions.list_async({"customer": account.customer, "limit": 100})
    assert subscriptions.data == []  # one-off invoices: no $0 subscription, no $0 monthly invoice


# --- spend alerts ---------------------------------------------------------------------------------------------


async def pending_webhook_delivery(pool: asyncpg.Pool, url: str) -> tuple[DeliveryKey, str]:
    """An account whose $400 alert was notified (estimate $500), with a webhook delivery still to send."""
    account_id = new_account_id("al")
    secret = "whsec_" + secrets.token_hex(16)
    key = DeliveryKey(account_id, PERIOD, 40_000, "webhook")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO accounts (id, name, email) VALUES ($1, $1, $1 || '@example.com')", account_id)
        await conn.execute("INSERT INTO spend_alert_channels (account_id, webhook_url, webhook_secret) "
                           "VALUES ($1, $2, $3)", account_id, url, secret)
        await conn.execute("INSERT INTO spend_alert_notifications (account_id, period, threshold_cents, "
                           "estimate_cents) VALUES ($1, $2, $3, 50000)", account_id, PERIOD, key.threshold_cents)
        await conn.execute("INSERT INTO spend_alert_deliveries (account_id, period, threshold_cents, channel, target) "
                           "VALUES ($1, $2, $3, 'webhook', $4)", account_id, PERIOD, key.threshold_cents, url)
    return key, secret


async def delivery_row(pool: asyncpg.Pool, key: DeliveryKey) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT state, attempts, last_error FROM spend_alert_deliveries WHERE account_id = $1 AND period = $2 "
        "AND threshold_cents = $3 AND channel = $4", key.account_id, key.period, key.threshold_cents, key.channel)


def loopback_allowed(settings: Settings) -> Settings:
    return settings.model_copy(update={"alert_webhook_allow_private": True})


async def test_each_webhook_attempt_is_counted_and_a_settled_one_never_resent(
        settings: Settings, pool: asyncpg.Pool) -> None:
    async with webhook_receiver(fail_first=1) as receiver:
        key, secret = await pending_webhook_delivery(pool, receiver.url())
        activities = SpendAlertDeliveryActivities(pool=pool, settings=loopback_allowed(settings))

        with pytest.raises(ApplicationError) as down:
            await environment(activity_type="billing.deliver_spend_alert").run(activities.deliver, key)
        assert down.value.type == "DeliveryFailed" and not down.value.non_retryable
        row = await delivery_row(pool, key)
        assert (row["state"], row["attempts"]) == ("pending", 1) and "answered 503" in row["last_error"]

        out = await environment(activity_type="billing.deliver_spend_alert", attempt=2).run(activities.deliver, key)
        assert out == DeliveryOutcome("delivered", 2, "answered 200")
        again = await environment(activity_type="billing.deliver_spend_alert", attempt=3).run(activities.deliver, key)
        assert again == DeliveryOutcome("delivered", 2, "already settled")

    assert [r.answered for r in receiver.requests] == [503, 200]
    assert len({r.headers["Tcloud-Event-Id"] for r in receiver.requests}) == 1
    assert all(signature_valid(r.headers["Tcloud-Signature"], r.body, secret) for r in receiver.requests)


@dataclass
class SlowReceiver:
    """Holds the first request until released (a receiver that hangs); answers 200 to later ones."""

    port: int
    first_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    answered: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            await self.release.wait()
            self.answered.append(503)
            return web.Response(status=503)
        self.answered.append(200)
        return web.Response(status=200)


@asynccontextmanager
async def slow_receiver() -> AsyncIterator[SlowReceiver]:
    receiver = SlowReceiver(procs.free_port())
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


async def test_a_delivery_cancelled_mid_request_stays_pending_for_the_retry(
        settings: Settings, pool: asyncpg.Pool) -> None:
    async with slow_receiver() as receiver:
        key, _ = await pending_webhook_delivery(pool, f"http://127.0.0.1:{receiver.port}/hook")
        activities = SpendAlertDeliveryActivities(pool=pool, settings=loopback_allowed(settings))
        first = environment(activity_type="billing.deliver_spend_alert")
        attempt = asyncio.create_task(first.run(activities.deliver, key))
        await asyncio.wait_for(receiver.first_arrived.wait(), 30)
        first.env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        # Counted (before the request), neither delivered nor failed, no error recorded: the retry owns it.
        row = await delivery_row(pool, key)
        assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, None)

        out = await environment(activity_type="billing.deliver_spend_alert", attempt=2).run(activities.deliver, key)
        assert out == DeliveryOutcome("delivered", 2, "answered 200")
        assert receiver.answered == [200]  # only the retry's request was answered; the cancelled one still hangs


# --- backups --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def bulky(pool: asyncpg.Pool) -> None:
    """A few MB of barely compressible rows, so pg_dump's output comes in many chunks."""
    await pool.execute("""CREATE TABLE IF NOT EXISTS ae_bulk AS
                          SELECT g, (SELECT string_agg(md5(g::text || ':' || i::text), '')
                                       FROM generate_series(1, 64) i) AS blob
                            FROM generate_series(1, 4000) g""")


async def pg_dump_sessions(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg_dump'"))


async def test_a_dump_heartbeats_its_progress_and_logs_with_the_activity_context(
        settings: Settings, pool: asyncpg.Pool, bulky: None, caplog: pytest.LogCaptureFixture) -> None:
    backup_id = "20250601T030000Z"
    run = environment(activity_type="dump_database", attempt=2, workflow_id=f"backup/{backup_id}")
    caplog.set_level(logging.INFO, logger="temporalio.activity")
    entry = await run.run(BackupActivities(settings=settings, pool=pool).dump_database,
                          DumpInput(backup_id, PLATFORM_DATABASE, datetime(2025, 6, 1, 3, tzinfo=UTC)))

    # Bytes written so far, after every chunk: rising, ending at the stored size.
    progress = [details[0] for details in run.beats]
    assert len(progress) > 2 and all(a < b for a, b in itertools.pairwise(progress))
    assert progress[-1] == entry.size
    stored = await (await open_store(settings)).get_bytes(entry.key)
    assert len(stored) == entry.size and hashlib.sha256(stored).hexdigest() == entry.sha256
    assert stored.startswith(b"PGDMP")
    # activity.logger tags the record with activity.info(): which workflow and which attempt dumped it.
    [record] = [r for r in caplog.records if r.getMessage().startswith("dumped platform")]
    context = record.__dict__["temporal_activity"]
    assert context["workflow_id"] == f"backup/{backup_id}" and context["attempt"] == 2


async def test_a_cancelled_dump_stores_nothing_and_stops_pg_dump(
        settings: Settings, pool: asyncpg.Pool, bulky: None) -> None:
    backup_id = "20250602T030000Z"
    dump = DumpInput(backup_id, PLATFORM_DATABASE, datetime(2025, 6, 2, 3, tzinfo=UTC))
    activities = BackupActivities(settings=settings, pool=pool)
    store = await open_store(settings)

    cancelled = environment(activity_type="dump_database", cancel_at_heartbeat=1)
    with pytest.raises(asyncio.CancelledError):
        await cancelled.run(activities.dump_database, dump)
    key = catalog.dump_key(backup_id, PLATFORM_DATABASE)
    assert await store.head(key) is None and key not in await store.list(catalog.PREFIX)

    async def pg_dump_gone() -> bool:
        return await pg_dump_sessions(pool) == 0

    await wait_until(pg_dump_gone, seconds=20, what="the cancelled pg_dump to end")

    retry = environment(activity_type="dump_database", attempt=2)
    entry = await retry.run(activities.dump_database, dump)
    head = await store.head(key)
    assert head is not None and head.size == entry.size and head.sha256 == entry.sha256

