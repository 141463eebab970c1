"""A known tenant workload for the metering tests, and two independent counts of its actions.

The workload uses activities (one retried once), local activities, a timer and signals. Its billable actions are
counted (1) from the workflows' event histories by Temporal Cloud's rules and (2) from the server's own
``action`` counter read straight off its /metrics endpoint; the ledger must equal both.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from tcloud.domain.metering import is_billable_action_type
from tests.usage_tenant_app import OrderInput, TenantOrderWorkflow, flaky, greet

TASK_QUEUE = "tenant-work"


def tenant_worker(client: Client) -> Worker:
    return Worker(client, task_queue=TASK_QUEUE, workflows=[TenantOrderWorkflow], activities=[greet, flaky])


async def _waiting_for_release(handle: WorkflowHandle) -> bool:
    history = await handle.fetch_history()
    events = list(history.events)
    signaled = any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED for e in events)
    return signaled and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


async def _start(client: Client, params: OrderInput, workflow_id: str) -> WorkflowHandle:
    """Start an order; a namespace registered a moment ago may take a few seconds to reach every service."""
    for _ in range(120):
        try:
            return await client.start_workflow(TenantOrderWorkflow.run, params, id=workflow_id, task_queue=TASK_QUEUE)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError(f"namespace {client.namespace} never served StartWorkflowExecution")


async def run_workload(client: Client, *, prefix: str, completed: int, held: int) -> list[WorkflowHandle]:
    """Run ``completed`` orders to the end and leave ``held`` orders open after their payment signal."""
    handles = []
    for i in range(completed + held):
        handles.append(await _start(client, OrderInput(hold=i >= completed), f"{prefix}-{i}"))
    for h in handles:
        await h.signal(TenantOrderWorkflow.pay)
    await asyncio.gather(*(h.result() for h in handles[:completed]))
    for h in handles[completed:]:
        for _ in range(300):
            if await _waiting_for_release(h):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{h.id} never reached its wait for release")
    return handles


def cloud_actions_in_history(history: History) -> int:
    """Billable actions of one execution by Temporal Cloud's rules, from its event history.

    A started workflow, each scheduled activity and each retry of it, each timer, each signal, and one action per
    workflow task completion that recorded markers (local activities), however many markers it carried.
    """
    total = 0
    marker_batches: set[int] = set()
    for e in history.events:
        t = e.event_type
        if t in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                 EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                 EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES):
            total += 1
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            total += e.activity_task_started_event_attributes.attempt - 1
        elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            total += 2
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_batches.add(e.marker_recorded_event_attributes.workflow_task_completed_event_id)
    return total + len(marker_batches)


async def cloud_actions_of(handles: Sequence[WorkflowHandle]) -> int:
    return sum([cloud_actions_in_history(await h.fetch_history()) for h in handles])


def server_action_counter(metrics_port: int, namespace_label_value: str) -> dict[str, int]:
    """The server's own ``action`` counter for one namespace, per action type, read off its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "action":
            continue
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace_label_value and not sample.name.endswith("_created"):
                kind = sample.labels["action_type"]
                out[kind] = out.get(kind, 0) + int(sample.value)
    return out


def billable(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if is_billable_action_type(k))


def settled_server_counter(metrics_port: int, label: str, *, at_least: int, timeout: float = 60) -> dict[str, int]:
    """The server's counter once it reached ``at_least`` billable actions and stopped moving for 3 s."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        now = server_action_counter(metrics_port, label)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif billable(now) >= at_least and time.monotonic() - stable_since >= 3:
            return now
        time.sleep(0.5)
    raise AssertionError(f"server counter for {label} did not settle at >= {at_least}: {last}")
