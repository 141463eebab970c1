"""The portal and the operator console in Debian's Chromium, over the real API, worker, Temporal and Stripe fake.

A customer signs in, creates a namespace and sees it become active, runs a workload in it and sees the usage
chart draw the collected actions, opens an invoice, and revokes a key. The operator sees the billing run's
per-account state with links to the right workflows in the Temporal UI.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import unquote

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from playwright.async_api import expect
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client

from tcloud.domain.metering import floor_hour, sanitize_label_value
from tcloud.platform.temporal import DATA_CONVERTER
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, unique, wait_stripe_customer
from tests.billing_helpers import add_usage, complete_hours, set_card, wait_until
from tests.browser import browser, console_sign_in, portal_sign_in, screenshot
from tests.usage_fixtures import collect_provisional, ledger_quantity, wait_prometheus_total
from tests.usage_workload import run_workload, settled_server_counter, tenant_worker

pytestmark = pytest.mark.usefixtures("worker")


def last_period() -> str:
    now = datetime.now(UTC)
    return f"{now.year - 1}-12" if now.month == 1 else f"{now.year}-{now.month - 1:02d}"


@pytest.fixture(scope="module")
async def customer(api: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                   stripe_api: stripe.StripeClient) -> TestAccount:
    account = await create_account(api, operator_headers, prefix="portal")
    customer_id = await wait_stripe_customer(pool, account.id)
    await set_card(stripe_api, customer_id, "4242424242424242")
    return account


async def test_namespace_usage_invoice_and_keys(
    api: TestClient, customer: TestAccount, pool: asyncpg.Pool, settings: Settings,
    temporal_server: harness.TemporalServer, temporal_client: Client, prometheus: harness.Prometheus,
    operator_headers: dict[str, str],
) -> None:
    name = unique("web")
    namespace = f"{name}.{customer.id}"
    async with browser() as b:
        page = await b.new_page(viewport={"width": 1200, "height": 900})
        await portal_sign_in(page, api, customer.token)

        # Create a namespace and watch it become active.
        await page.fill("#ns-name", name)
        await page.fill("#ns-retention", "3")
        await page.click("form[data-testid=create-namespace] button[type=submit]")
        state = page.locator(f"[data-testid='state-{namespace}']")
        await state.filter(has_text="active").wait_for(timeout=90000)
        await screenshot(page, "portal-namespace-active")

        # A real workload in it, scraped by Prometheus, collected into the ledger.
        tenant = await Client.connect(temporal_server.address, namespace=namespace, data_converter=DATA_CONVERTER)
        async with tenant_worker(tenant):
            await run_workload(tenant, prefix="portal", completed=2, held=0)
        label = sanitize_label_value(namespace)
        counts = await asyncio.to_thread(settled_server_counter, temporal_server.ports.metrics, label, at_least=2)
        prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        await asyncio.to_thread(wait_prometheus_total, prom, label, sum(counts.values()))
        hour = floor_hour(datetime.now(UTC))
        await collect_provisional(temporal_client, settings, "actions", hour)
        collected = await ledger_quantity(pool, namespace, "actions", [hour])
        assert collected > 0

        await page.click("nav a[href='#/usage']")
        chart = page.locator("[data-testid=actions-chart]")
        await chart.wait_for(state="visible", timeout=20000)
        drawn = await page.evaluate(
            """() => {
                 const chart = Chart.getChart(document.querySelector('[data-testid=actions-chart]'));
                 return chart.data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + b, 0), 0);
               }""")
        assert drawn == collected
        row = page.locator("[data-testid=usage-table] tr", has_text=namespace)
        assert f"{collected:,}" in await row.inner_text()
        await page.locator("[data-testid=estimate-total]").wait_for(timeout=15000)
        await screenshot(page, "portal-usage")

        # An invoice for last month, made by a real billing run, opened from the list.
        period = last_period()
        await pool.execute("UPDATE accounts SET created_at = '2024-01-01' WHERE id = $1", customer.id)
        await add_usage(pool, customer.id, period, actions=3_000_000)
        await complete_hours(pool, period)
        resp = await api.post("/admin/billing/runs", headers=operator_headers, json={"period": period})
        assert resp.status == 202, await resp.text()
        async def paid() -> bool:
            status = await pool.fetchval("SELECT status FROM invoices WHERE account_id = $1 AND period = $2",
                                         customer.id, period)
            return bool(status == "paid")

        await wait_until(paid, seconds=120, what=f"the invoice of {customer.id} for {period} to be paid")
        total = await pool.fetchval("SELECT total_cents FROM invoices WHERE account_id = $1 AND period = $2",
                                    customer.id, period)
        await page.click("nav a[href='#/invoices']")
        await page.click(f"[data-testid=invoices] a:text('{period}')")
        lines = page.locator("[data-testid=invoice-lines] tbody tr")
        await lines.first.wait_for(timeout=15000)
        assert await lines.count() >= 3
        assert await page.locator("[data-testid=invoice-total]").inner_text() == f"${total / 100:,.2f}"
        await screenshot(page, "portal-invoice")

        # Create a second key (shown once), then revoke it.
        await page.click("nav a[href='#/keys']")
        await page.fill("#key-name", "ci-key")
        await page.click("form[data-testid=create-key] button[type=submit]")
        new_key = await page.locator("[data-testid=new-key]").inner_text()
        assert new_key.startswith("tcsk_")
        assert (await api.get("/cloud/account", headers={"Authorization": f"Bearer {new_key}"})).status == 200
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("button[aria-label='Revoke ci-key']")
        await expect(page.locator("[data-testid=api-keys] tr", has_text="ci-key")).to_have_count(0, timeout=15000)
        assert (await api.get("/cloud/account", headers={"Authorization": f"Bearer {new_key}"})).status == 401
        await screenshot(page, "portal-keys")

        # A narrow screen still shows the navigation and the content.
        await page.set_viewport_size({"width": 375, "height": 800})
        await page.click("nav a[href='#/namespaces']")
        await state.wait_for(timeout=15000)
        await screenshot(page, "portal-narrow")

        # The operator console: the run's per-account state, linked to the workflow in the Temporal UI.
        console = await b.new_page(viewport={"width": 1200, "height": 900})
        await console_sign_in(console, api, operator_headers)
        await console.locator(f"[data-testid='status-{customer.id}']").wait_for(timeout=15000)
        await console.click("nav a[href='#/billing']")
        await console.fill("#period", period)
        await console.click("button:text('Show')")
        status = console.locator(f"[data-testid='invoice-status-{customer.id}']")
        await status.wait_for(timeout=15000)
        assert "paid" in await status.inner_text()
        # The invoice links to the billing batch that made it (the batch's first account names it).
        made_by = await pool.fetchval("SELECT workflow_id FROM invoices WHERE account_id = $1 AND period = $2",
                                      customer.id, period)
        assert made_by is not None and made_by.startswith(f"billing-batch/{period}/")
        link = console.locator(f"a[data-workflow-id='{made_by}']")
        href = await link.get_attribute("href")
        assert href is not None and href.startswith(settings.temporal_ui_url)
        workflow_path = f"/namespaces/{settings.control_namespace}/workflows/{made_by}"
        assert unquote(href).endswith(workflow_path)
        await screenshot(console, "console-billing-run")

        # The link opens the workflow in the real Temporal UI.
        ui = await b.new_page(viewport={"width": 1200, "height": 900})
        await ui.goto(href)
        await ui.get_by_text(made_by).first.wait_for(timeout=30000)
        await screenshot(ui, "temporal-ui-billing-workflow")

