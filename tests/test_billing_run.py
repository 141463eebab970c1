"""The billing run's bookkeeping across continue-as-new: a child's invoice_done (runs from before batches) or a
batch's batch_done that reaches the new run before anything else still counts (it once was dropped, and the run
waited forever)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from tcloud.settings import Settings
from workflows.billing import BillingRunInput, BillingRunWorkflow, billing_run_id
from workflows.billing_batch import BatchDone, batch_workflow_id
from workflows.billing_invoice import InvoiceDone

PERIOD = "2025-10"


async def test_signal_in_the_first_activation_after_continue_as_new_counts(
        worker: None, settings: Settings, temporal_client: Client) -> None:
    # What continue-as-new hands over: ledger checked, cursor past every account, one child still in flight.
    carried = BillingRunInput(period=PERIOD, ledger_complete=True, cursor="zzzzzzzz", in_flight=["acct1"],
                              counts={"paid": 3})
    handle = await temporal_client.start_workflow(
        BillingRunWorkflow.run, carried, id=billing_run_id(PERIOD), task_queue=settings.task_queue,
        start_signal="invoice_done", start_signal_args=[InvoiceDone("acct1", "paid")])
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.phase == "done" and result.counts == {"paid": 4} and result.in_flight == 0


async def test_a_batch_done_in_the_first_activation_after_continue_as_new_counts(
        worker: None, settings: Settings, temporal_client: Client) -> None:
    period = "2025-11"
    batch = batch_workflow_id(period, "acct1")
    carried = BillingRunInput(period=period, ledger_complete=True, cursor="zzzzzzzz",
                              batches_in_flight={batch: 3}, counts={"paid": 3})
    handle = await temporal_client.start_workflow(
        BillingRunWorkflow.run, carried, id=billing_run_id(period), task_queue=settings.task_queue,
        start_signal="batch_done", start_signal_args=[BatchDone(batch, {"paid": 2, "past_due": 1})])
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.phase == "done" and result.counts == {"paid": 5, "past_due": 1} and result.in_flight == 0
