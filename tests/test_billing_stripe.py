"""A billing run against the real parts: Temporal dev server, the real worker, Postgres and localstripe.

The Stripe invoice's lines and total must equal the ledger-derived invoice; a second run invoices nobody twice.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest
import stripe
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy

from tcloud.services.invoicing import invoice_id_for, price_account_month
from tcloud.settings import Settings
from tests.billing_helpers import (
    add_usage,
    complete_hours,
    make_account,
    stripe_invoices_for,
    succeeded_charges,
    wait_until,
)
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id
from workflows.billing_batch import BillingBatchWorkflow
from workflows.billing_invoice import InvoiceInput, InvoiceWorkflow, invoice_workflow_id

PERIOD = "2025-03"
GB = 10**9


@pytest.fixture(scope="module")
async def billed(settings: Settings, pool: asyncpg.Pool, stripe_api: stripe.StripeClient, worker: None,
                 temporal_client: Client) -> dict[str, object]:
    payg = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, payg.id, PERIOD, actions=11_250_000, active_byte_hours=100 * GB,
                    retained_byte_hours=1000 * GB, namespaces=3)
    essentials = await make_account(pool, stripe_api, plan="essentials")
    await add_usage(pool, essentials.id, PERIOD, actions=1_500_000)
    idle = await make_account(pool, stripe_api, plan="payg")
    await add_usage(pool, idle.id, PERIOD, actions=500, billable=False)  # not billable: a zero invoice
    await complete_hours(pool, PERIOD)
    result = await temporal_client.execute_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=PERIOD, grace_hours=0, max_concurrent=2),
        id=billing_run_id(PERIOD), task_queue=settings.task_queue)
    return {"payg": payg, "essentials": essentials, "idle": idle, "result": result}


async def test_run_invoices_every_account_once(billed: dict) -> None:
    result = billed["result"]
    assert result.phase == "done"
    assert result.counts == {"paid": 2, "zero": 1}


@pytest.mark.parametrize("who", ["payg", "essentials"])
async def test_stripe_invoice_equals_ledger_invoice(billed: dict, who: str, pool: asyncpg.Pool,
                                                    stripe_api: stripe.StripeClient) -> None:
    account = billed[who]
    invoice_id = invoice_id_for(account.id, PERIOD)
    inv = await pool.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
    lines = await pool.fetch("SELECT * FROM invoice_lines WHERE invoice_id = $1 ORDER BY line_no", invoice_id)
    assert inv["status"] == "paid" and inv["payment_attempts"] == 1
    # Reproducible from the ledger: pricing it again gives the same lines.
    again = await price_account_month(pool, account.id, PERIOD)
    assert [line.amount_cents for line in again.priced.lines] == [r["amount_cents"] for r in lines]
    assert inv["total_cents"] == again.priced.total_cents == sum(r["amount_cents"] for r in lines)

    [stripe_inv] = await stripe_invoices_for(stripe_api, account.customer, invoice_id)
    assert stripe_inv["id"] == inv["stripe_invoice_id"]
    assert stripe_inv["status"] == "paid"
    assert stripe_inv["total"] == inv["total_cents"]
    items = {(line["metadata"]["tcloud_line"], line["amount"]) for line in stripe_inv["lines"]["data"]
             if line.get("metadata")}
    assert items == {(str(r["line_no"]), r["amount_cents"]) for r in lines if r["amount_cents"] > 0}
    charges = await succeeded_charges(stripe_api, account.customer)
    assert [c["amount"] for c in charges] == [inv["total_cents"]]


async def test_worked_check_on_the_real_invoice(billed: dict, pool: asyncpg.Pool) -> None:
    invoice_id = invoice_id_for(billed["payg"].id, PERIOD)
    actions = await pool.fetchrow("SELECT * FROM invoice_lines WHERE invoice_id = $1 AND kind = 'actions'", invoice_id)
    assert actions["amount_cents"] == 52_500 and actions["quantity"] == Decimal(11_250_000)
    # 100 GB-hours active at $0.042 = $4.20; 1000 GB-hours retained at $0.00105 = $1.05.
    total = await pool.fetchval("SELECT total_cents FROM invoices WHERE id = $1", invoice_id)
    assert total == 52_500 + 420 + 105
    essentials = await pool.fetch("SELECT kind, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY "
                                  "line_no", invoice_id_for(billed["essentials"].id, PERIOD))
    assert [(r["kind"], r["amount_cents"]) for r in essentials] == [
        ("actions", 2_500), ("active_storage", 0), ("retained_storage", 0), ("minimum", 7_500)]


async def test_lines_point_at_the_ledger_rows_they_sum(billed: dict, pool: asyncpg.Pool) -> None:
    invoice_id = invoice_id_for(billed["payg"].id, PERIOD)
    rows = await pool.fetch(
        """SELECT l.kind, l.quantity, sum(s.quantity) AS src, sum(s.ledger_rows) AS n, count(s.*) AS namespaces
             FROM invoice_lines l JOIN invoice_line_sources s USING (invoice_id, line_no)
            WHERE invoice_id = $1 GROUP BY l.kind, l.quantity ORDER BY l.kind""", invoice_id)
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["actions"]["src"] == by_kind["actions"]["quantity"] == 11_250_000
    assert by_kind["actions"]["namespaces"] == 3 and by_kind["actions"]["n"] == 12
    assert by_kind["active_storage"]["src"] == 100 * GB  # byte-hours at the source, GB-hours on the line
    # Re-summing the ledger through the recorded pointers gives the recorded quantities.
    resum = await pool.fetchval(
        """SELECT sum(u.quantity) FROM invoice_line_sources s JOIN invoices i ON i.id = s.invoice_id
             JOIN usage_ledger u ON u.namespace = s.namespace AND u.metric = s.metric AND u.account_id = i.account_id
                               AND u.billable AND u.hour >= s.hour_from AND u.hour < s.hour_to
            WHERE s.invoice_id = $1 AND s.metric = 'actions'""", invoice_id)
    assert resum == 11_250_000


async def test_zero_invoice_is_recorded_not_sent(billed: dict, pool: asyncpg.Pool,
                                                 stripe_api: stripe.StripeClient) -> None:
    idle = billed["idle"]
    inv = await pool.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id_for(idle.id, PERIOD))
    assert inv["status"] == "zero" and inv["total_cents"] == 0 and inv["stripe_invoice_id"] is None
    listed = await stripe_api.v1.invoices.list_async({"customer": idle.customer})
    assert listed.data == []


async def test_second_run_and_duplicate_child_invoice_nobody_twice(billed: dict, settings: Settings,
                                                                   temporal_client: Client,
                                                                   stripe_api: stripe.StripeClient) -> None:
    again = await temporal_client.execute_workflow(
        BillingRunWorkflow.run, BillingRunInput(period=PERIOD, grace_hours=0), id=billing_run_id(PERIOD),
        task_queue=settings.task_queue, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    assert again.counts == {"already_invoiced": 3}
    payg = billed["payg"]
    # The account's own invoice workflow started by hand (e.g. from the temporal CLI) finds the invoice paid.
    status = await temporal_client.execute_workflow(
        InvoiceWorkflow.run, InvoiceInput(payg.id, PERIOD, notify_parent=False),
        id=invoice_workflow_id(payg.id, PERIOD), task_queue=settings.task_queue)
    assert status.state == "paid" and status.invoice_id == invoice_id_for(payg.id, PERIOD)
    assert len(await stripe_invoices_for(stripe_api, payg.customer, invoice_id_for(payg.id, PERIOD))) == 1
    assert len(await succeeded_charges(stripe_api, payg.customer)) == 1


async def test_run_is_labelled_for_the_ui(billed: dict, temporal_client: Client) -> None:
    desc = await temporal_client.get_workflow_handle(billing_run_id(PERIOD)).describe()
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert attrs["TcloudPeriod"] == PERIOD and attrs["TcloudStatus"] == "done"


async def test_an_accounts_billing_is_one_search_in_the_ui(billed: dict, temporal_client: Client) -> None:
    """``TcloudAccounts = '<account>' AND TcloudPeriod = '<month>'`` finds the batch that billed it, and the batch's
    status query answers the account's state."""
    payg = billed["payg"]
    query = f"TcloudAccounts = '{payg.id}' AND TcloudPeriod = '{PERIOD}'"
    found: list[str] = []

    async def listed() -> bool:
        found[:] = [w.id async for w in temporal_client.list_workflows(query)]
        return bool(found)

    await wait_until(listed, seconds=30, what="the batch in visibility")
    [batch_id] = found
    handle = temporal_client.get_workflow_handle(batch_id)
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert payg.id in attrs["TcloudAccounts"] and attrs["TcloudPeriod"] == PERIOD and attrs["TcloudStatus"] == "done"
    status = await handle.query(BillingBatchWorkflow.status)
    assert status.states[payg.id] == "paid" and status.states[billed["idle"].id] == "zero"
