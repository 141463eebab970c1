"""The billing API over a real socket, with the real worker, Temporal, Postgres and localstripe."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient
from temporalio.client import Client

from tcloud.domain.billing_period import period_bounds, period_of
from tcloud.services.invoicing import invoice_id_for, price_account_month
from tcloud.settings import Settings
from tests.billing_helpers import add_usage, complete_hours, customer_headers, make_account, wait_until
from workflows.spend_alerts import SpendAlertsRun, SpendAlertsWorkflow

PERIOD = "2025-08"


@pytest.fixture(scope="module")
async def accounts(pool: asyncpg.Pool, stripe_api: stripe.StripeClient) -> dict[str, object]:
    acme = await make_account(pool, stripe_api, plan="business")
    other = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, acme.id, PERIOD, actions=4_000_000)
    await add_usage(pool, other.id, PERIOD, actions=3_000_000)
    await complete_hours(pool, PERIOD)
    return {"acme": acme, "other": other, "acme_headers": await customer_headers(pool, acme.id),
            "other_headers": await customer_headers(pool, other.id)}


@pytest.fixture(scope="module")
async def run_done(worker: None, api: TestClient, accounts: dict, operator_headers: dict[str, str]) -> dict:
    """The operator starts the period's billing run through the API; it completes."""
    started = await api.post("/admin/billing/runs", json={"period": PERIOD}, headers=operator_headers)
    assert started.status == 202, await started.text()
    assert (await started.json())["workflow_id"] == f"billing-run/{PERIOD}"

    async def done() -> bool:
        resp = await api.get(f"/admin/billing/runs/{PERIOD}", headers=operator_headers)
        return resp.status == 200 and (await resp.json())["status"] == "completed"

    await wait_until(done, seconds=120, what="the billing run")
    return await (await api.get(f"/admin/billing/runs/{PERIOD}", headers=operator_headers)).json()


async def test_operator_starts_a_run_and_sees_it(run_done: dict, api: TestClient, accounts: dict,
                                                 operator_headers: dict[str, str]) -> None:
    assert run_done["phase"] == "done" and run_done["counts"] == {"paid": 2}
    assert run_done["invoices_by_status"] == {"paid": 2}
    again = await api.post("/admin/billing/runs", json={"period": PERIOD}, headers=operator_headers)
    assert again.status == 409
    rerun = await api.post("/admin/billing/runs", json={"period": PERIOD, "rerun": True}, headers=operator_headers)
    assert rerun.status == 202

    async def rerun_done() -> bool:
        body = await (await api.get(f"/admin/billing/runs/{PERIOD}", headers=operator_headers)).json()
        return body["status"] == "completed" and body["counts"] == {"already_invoiced": 2}

    await wait_until(rerun_done, seconds=120, what="the rerun")
    listed = await api.get("/admin/billing/invoices", params={"status": "paid", "period": PERIOD},
                           headers=operator_headers)
    assert {i["account_id"] for i in (await listed.json())["invoices"]} == {accounts["acme"].id, accounts["other"].id}


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("post", "/admin/billing/runs", {"period": "2025-13"}, 400),
    ("post", "/admin/billing/runs", {"period": "2025-08", "extra": 1}, 400),
    ("post", "/admin/billing/runs", {"period": period_of(datetime.now(UTC))}, 400),
    ("get", "/admin/billing/runs/2025-8", None, 400),
    ("get", "/admin/billing/runs/2019-01", None, 404),
    ("get", "/admin/billing/invoices?status=lost", None, 400),
    ("get", "/admin/billing/invoices?limit=0", None, 400),
])
async def test_operator_bad_input_gets_json_4xx(api: TestClient, operator_headers: dict[str, str], method: str,
                                                path: str, body: dict | None, status: int) -> None:
    resp = await getattr(api, method)(path, json=body, headers=operator_headers)
    assert resp.status == status
    assert (await resp.json())["message"]


async def test_operator_routes_need_the_operator_token(api: TestClient, accounts: dict) -> None:
    assert (await api.get("/admin/billing/invoices")).status == 401
    assert (await api.get("/admin/billing/invoices", headers=accounts["acme_headers"])).status == 403


async def test_customer_sees_own_invoice_with_lines(run_done: dict, api: TestClient, accounts: dict) -> None:
    acme = accounts["acme"]
    listed = await (await api.get("/cloud/billing/invoices", headers=accounts["acme_headers"])).json()
    assert [i["id"] for i in listed["invoices"]] == [invoice_id_for(acme.id, PERIOD)]
    resp = await api.get(f"/cloud/billing/invoices/{invoice_id_for(acme.id, PERIOD)}",
                         headers=accounts["acme_headers"])
    inv = await resp.json()
    # Business: 2.5M included, 1.5M at $50/M = $75.00; below the $500 minimum, so a $425.00 top-up.
    assert [(line["kind"], line["amount"]) for line in inv["lines"]] == [
        ("actions", "75.00"), ("active_storage", "0.00"), ("retained_storage", "0.00"), ("minimum", "425.00")]
    assert inv["total"] == "500.00" and inv["status"] == "paid" and inv["stripe_invoice_id"].startswith("in_")
    assert inv["lines"][0]["ledger_rows"] == 8 and "hosted_invoice_url" in inv
    other = await api.get(f"/cloud/billing/invoices/{invoice_id_for(acme.id, PERIOD)}",
                          headers=accounts["other_headers"])
    assert other.status == 404
    assert (await api.get("/cloud/billing/invoices", params={"status": "nope"},
                          headers=accounts["acme_headers"])).status == 400
    assert (await api.get("/cloud/billing/invoices")).status == 401


async def test_upcoming_is_the_same_pricing_as_the_invoice(api: TestClient, accounts: dict,
                                                           pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    current = period_of(now)
    acme = accounts["acme"]
    start, _ = period_bounds(current)
    await pool.execute(
        """INSERT INTO usage_ledger (namespace, hour, metric, quantity, account_id, billable)
           VALUES ($1, $2, 'actions', 3000000, $3, true)""", f"ns0.{acme.id}", start, acme.id)
    resp = await api.get("/cloud/billing/upcoming", headers=accounts["acme_headers"])
    body = await resp.json()
    expected = await price_account_month(pool, acme.id, current, until=now)
    assert body["period"] == current and body["total_cents"] == expected.priced.total_cents
    assert [line["amount_cents"] for line in body["lines"]] == [line.amount_cents for line in expected.priced.lines]
    assert body["lines"][0]["amount"] == "25.00"  # 0.5M beyond the 2.5M included, at $50/M


async def test_spend_alerts_notify_once_per_threshold_per_period(worker: None, api: TestClient, accounts: dict,
                                                                 pool: asyncpg.Pool, temporal_client: Client,
                                                                 settings: Settings) -> None:
    acme, headers = accounts["acme"], accounts["acme_headers"]
    bad = await api.put("/cloud/billing/alerts", json={"thresholds_cents": [-5]}, headers=headers)
    assert bad.status == 400
    bad = await api.put("/cloud/billing/alerts", json={"thresholds": [5]}, headers=headers)
    assert bad.status == 400
    ok = await api.put("/cloud/billing/alerts", json={"thresholds_cents": [60_000, 40_000, 40_000]}, headers=headers)
    assert (await ok.json())["thresholds_cents"] == [40_000, 60_000]
    assert (await (await api.get("/cloud/billing/alerts", headers=headers)).json())["thresholds_cents"] == [
        40_000, 60_000]
    # The hourly check, as its Schedule starts it, twice.
    results = [await temporal_client.execute_workflow(
        SpendAlertsWorkflow.run, SpendAlertsRun(), id=f"billing-spend-alerts-test-{uuid.uuid4()}",
        task_queue=settings.task_queue) for _ in range(2)]
    # Estimate $500 (business minimum): the $400 threshold is reached, the $600 one not; and only once.
    assert results[0].notified == {acme.id: [40_000]}
    assert results[1].notified == {}
    events = await pool.fetchval("SELECT count(*) FROM billing_events WHERE account_id = $1 AND "
                                 "kind = 'spend_alert.notify'", acme.id)
    assert events == 1
    # No channel configured: the notification is recorded and shown, with nowhere to deliver it.
    shown = (await (await api.get("/cloud/billing/alerts", headers=headers)).json())["notifications"]
    assert [(n["threshold_cents"], n["deliveries"]) for n in shown] == [(40_000, [])]


async def test_billing_routes_are_documented(api: TestClient) -> None:
    doc = await (await api.get("/openapi.json")).json()
    for path in ("/cloud/billing/invoices", "/cloud/billing/invoices/{invoice_id}", "/cloud/billing/upcoming",
                 "/cloud/billing/alerts", "/admin/billing/runs", "/admin/billing/runs/{period}",
                 "/admin/billing/invoices", "/webhooks/stripe"):
        assert path in doc["paths"], path
