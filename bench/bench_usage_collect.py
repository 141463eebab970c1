"""Both usage collectors for one hour of N namespaces, through the real workflows on the platform's real parts.

    .venv/bin/python -m bench.bench_usage_collect [--namespaces 10000] [--wait] [--state DIR]
    .venv/bin/python -m bench.bench_usage_collect --synthetic [--namespaces 10000] [--types 2] [--step 300]

The default run uses what the local platform runs: the official Temporal server (``launcher.temporal_server``, on
an embedded PostgreSQL, 4 history shards), Debian's Prometheus scraping the server every 10 s, and the real worker
(``workers.main.run_worker``, in this process). They are kept in ``--state`` (default
``~/.cache/tcloud/bench-usage-collect``) so that the slow set-up happens once:

1. set-up, the first time only: N/10 accounts of 10 namespaces each, written by the provisioning store functions
   (``insert_account``, ``reserve_namespace``, ``activate_namespace_and_open_ownership``) into a template database;
   every namespace registered on the server through the internal frontend (owner in its data, 7 days' retention);
   a workflow left running in every tenth namespace (open executions: active storage), and the hour's usage;
2. the hour's usage (at set-up, and with ``--wait``): a workflow started, signalled and terminated in every
   namespace, so that every namespace has a closed execution retained from this hour on;
3. the ``action`` counter of every namespace for the hour collected (see below), loaded into a new Prometheus
   with ``promtool tsdb create-blocks-from openmetrics``, that Prometheus then scraping the server as usual;
4. the collection, timed: ``UsageHourlyWorkflow`` collects the hour for both collectors (its children
   ``usage/<collector>/<hour>``) into a fresh copy of the template database. The hour is the last one that closed;
   ``--wait`` collects the hour of the usage it just ran, once that hour has closed.

It prints the wall time of the collection and of each collector's workflow, the calls made to Temporal (counted
twice: in this process by RPC, which counts what Python code calls, the collectors' visibility calls among them;
and by the server, ``service_requests`` of its internal frontend, which also counts the worker's polls and
completions), the HTTP requests Prometheus served (its own ``prometheus_http_requests_total``), the CPU seconds of
each process, the ledger rows written, and whether every namespace's actions in the ledger equal the counter's.

Where the bench departs from the platform, and why (measured here, 10,000 namespaces):

- The server runs a worker of its own in every namespace (Schedules, batch operations: four long polls each, and
  an SDK client's metrics per namespace): that made the server 18 GB resident, and its /metrics 264 MB (1.4 million
  series), within 9 minutes on this 23 GB machine, still growing. Only the control namespace keeps one here.
- The server labels most of its ~60 metric families with the namespace (histograms with ~20 buckets each): even
  with one bucket per histogram and the operation label dropped, a single workflow started, signalled and
  terminated left 365 series per namespace (3.6 million for 10,000; 1.7 million, 9 GB in the server and 5 GB in
  Prometheus after the first 2,000), and rendering /metrics took longer than the 10 s scrape timeout, so the
  ``action`` counter was lost with the rest. Here the server keeps the namespace label for the control namespace
  only (``excludeTags``), and the tenants' ``action`` counter comes from step 3: the server's series shape (action
  type, namespace, service, job, instance), sampled every 10 s, eight frontend processes of which two restart
  within the hour, 1% of series new within it. The ledger is checked against that data, namespace by namespace.

``--synthetic`` is the older bench of the ``actions`` collector's code alone on such a Prometheus (no Temporal):
its queries, exact deltas and ledger write, timed. Target: <= 10 s for 10,000 namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import os
import pstats
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.duration_pb2 import Duration
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from temporalio import service as temporal_service
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    RegisterNamespaceRequest,
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
    TerminateWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from activities import usage_ledger, usage_sources
from activities.namespaces import OWNER_KEY
from activities.usage import CollectHourOutput
from activities.usage_ledger import LedgerRow
from api import jwt
from launcher import procs, temporal_server
from tcloud.domain import metering
from tcloud.domain.metering import COLLECTORS, HOUR, floor_hour, hour_id
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect, namespace_served
from tcloud.settings import Settings
from tcloud.store import accounts as accounts_store
from tcloud.store import namespaces as namespaces_store
from tests import harness
from workers.main import run_worker
from workflows.namespaces import create_workflow_id
from workflows.usage import UsageCollectHourWorkflow, UsageHourlyInput, UsageHourlyWorkflow, collect_workflow_id

# --- Through Temporal: the platform's real parts ----------------------------------------------------------------

DEFAULT_STATE = Path(os.environ.get("TCLOUD_BENCH_STATE", "~/.cache/tcloud/bench-usage-collect")).expanduser()
CONTROL_NAMESPACE = "tcloud-system"
TEMPLATE_DB = "bench_platform"
RUN_DB_PREFIX = "bench_run_"
NAMESPACES_PER_ACCOUNT = 10
RETENTION_DAYS = 7
SCRAPE_SECONDS = 10  # the local platform's interval (launcher/cli.py)
ACTION_TYPES = 3  # billable action types per namespace in the hour's counter
TENANT_QUEUE = "bench-tenant-work"  # no worker polls it: the tenants' workflows only start, wait and stop
HELD_EVERY = 10  # one namespace in this many has a workflow left running
# Only while setting up: RegisterNamespace's own limit (frontend.rps.namespaceReplicationInducingAPIs) is 20/s.
SETUP_DYNAMIC_CONFIG = {"frontend.rps.namespaceReplicationInducingAPIs": [{"value": 1000}]}
# The bench's departures from the platform's server config (see the module's docstring).
METRICS_OVERRIDE: dict[str, object] = {"excludeTags": {"namespace": [CONTROL_NAMESPACE]}}
EXTRA_DYNAMIC_CONFIG: dict[str, object] = {
    "worker.perNamespaceWorkerCount": [{"value": 1, "constraints": {"namespace": CONTROL_NAMESPACE}},
                                       {"value": 0}],
}


def _configured_process_for_bench(original: Callable[..., procs.Process]) -> Callable[..., procs.Process]:
    """``launcher.temporal_server.configured_process``, then the bench's changes to the files it wrote."""

    def configured(root: Path, **kwargs: Any) -> procs.Process:
        proc = original(root, **kwargs)
        path = root / "temporal-server.yaml"
        config = json.loads(path.read_text().split("\n", 1)[1])
        config["global"]["metrics"].update(METRICS_OVERRIDE)
        path.write_text("# Generated by bench/bench_usage_collect.py from launcher/temporal_server.py's config.\n"
                        + json.dumps(config, indent=2) + "\n")
        (root / "dynamicconfig.yaml").write_text(
            json.dumps({**temporal_server.DYNAMIC_CONFIG, **EXTRA_DYNAMIC_CONFIG}, indent=2) + "\n")
        return proc

    return configured


def namespace_names(n: int) -> list[tuple[str, str]]:
    """``(namespace, account)`` pairs: ``orders<j>.bench<i>``, ten per account (the essentials plan's quota)."""
    return [(f"orders{k % NAMESPACES_PER_ACCOUNT}.bench{k // NAMESPACES_PER_ACCOUNT:05d}",
             f"bench{k // NAMESPACES_PER_ACCOUNT:05d}") for k in range(n)]


class CallCounter:
    """Counts the RPCs Python code makes through any Temporal client of this process, by RPC name."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._original = temporal_service._BridgeServiceClient._rpc_call

    def install(self) -> None:
        original = self._original
        counts = self.counts

        async def counted(client: Any, rpc: str, *args: Any, **kwargs: Any) -> Any:
            counts[rpc] += 1
            return await original(client, rpc, *args, **kwargs)

        temporal_service._BridgeServiceClient._rpc_call = counted  # type: ignore[method-assign,assignment]

    def snapshot(self) -> collections.Counter[str]:
        return collections.Counter(self.counts)


def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def server_requests(metrics_port: int) -> collections.Counter[str]:
    """The Temporal server's ``service_requests`` counter by ``service_name/control|tenants/operation``.

    ``control``: calls in the control namespace (the platform's worker and this bench); ``tenants``: calls in any
    other namespace (the collectors' visibility calls, and the polls of the server's own per-namespace workers).
    """
    control = metering.sanitize_label_value(CONTROL_NAMESPACE)
    out: collections.Counter[str] = collections.Counter()
    for family in text_string_to_metric_families(_metrics_text(f"http://127.0.0.1:{metrics_port}/metrics")):
        if family.name != "service_requests":
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            where = {control: "control", "_unknown_": "none"}.get(s.labels.get("namespace", ""), "tenants")
            out[f"{s.labels.get('service_name', '?')}/{where}/{s.labels.get('operation', '?')}"] += int(s.value)
    return out


def prometheus_requests(port: int) -> collections.Counter[str]:
    """Prometheus' own count of the HTTP requests it served, by handler."""
    out: collections.Counter[str] = collections.Counter()
    for family in text_string_to_metric_families(_metrics_text(f"http://127.0.0.1:{port}/metrics")):
        if family.name != "prometheus_http_requests":
            continue
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[s.labels.get("handler", "?")] += int(s.value)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every descendant still running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return total


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


@dataclass
class State:
    """What is kept in the state directory between runs (``state.json``)."""

    root: Path
    ports: dict[str, Any] = field(default_factory=dict)
    namespaces: int = 0  # set up so far
    setup_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.root / "state.json"

    @classmethod
    def load(cls, root: Path) -> State:
        state = cls(root)
        if state.file.exists():
            saved = json.loads(state.file.read_text())
            state.ports, state.namespaces = saved["ports"], saved["namespaces"]
            state.setup_seconds = saved.get("setup_seconds", {})
        return state

    def save(self) -> None:
        self.file.write_text(json.dumps({"ports": self.ports, "namespaces": self.namespaces,
                                         "setup_seconds": self.setup_seconds}, indent=2) + "\n")


def _server_ports(state: State) -> temporal_server.ServerPorts:
    """The ports of the previous run (the membership table remembers them), or new ones if any is taken."""
    names = [f.name for f in fields(temporal_server.ServerPorts)]
    saved = state.ports.get("temporal")
    if isinstance(saved, dict) and all(not procs.port_open(saved[n]) for n in names):
        return temporal_server.ServerPorts(**{n: saved[n] for n in names})
    return temporal_server.ServerPorts.free()

class BenchPrometheus(harness.Prometheus):
    """The test harness's Prometheus, started on a new data directory holding ``blocks`` (promtool's output)."""

    def __init__(self, root: Path, targets: dict[str, list[str]], *, port: int, blocks: Path) -> None:
        super().__init__(root, targets, port=port, interval=f"{SCRAPE_SECONDS}s")
        self.blocks = blocks

    def start(self) -> None:
        data = self.root / "prometheus"
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(self.blocks, data)
        config = self.root / "prometheus.yml"
        config.write_text(procs.prometheus_config(self.targets, interval=self.interval))
        proc = procs.prometheus_process(config=config, data_dir=data, port=self.port,
                                        log=self.root / "prometheus.log")
        self.managed = harness.Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: procs.prometheus_ready(self.port), timeout=120, what="prometheus", proc=popen,
                         log=proc.log)


class Platform:
    """The embedded PostgreSQL and the Temporal server of the state directory, and a Prometheus per run."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.pgdata = state.root / "pg"
        self.server_dsn = ""
        self.temporal: harness.TemporalServer | None = None
        self.prometheus: BenchPrometheus | None = None

    def start(self) -> None:
        self.server_dsn = procs.start_embedded_postgres(self.pgdata)
        jwks = self.state.root / "jwks.json"
        jwks.write_text(json.dumps(jwt.jwks(Settings(state_dir=self.state.root))))
        ports = _server_ports(self.state)
        self.temporal = harness.TemporalServer(self.state.root / "temporal", server_dsn=self.server_dsn,
                                               jwks_uri=jwks.as_uri(), namespaces=(CONTROL_NAMESPACE,),
                                               ports=ports, databases=temporal_server.DATABASES)
        self.temporal.start()
        self.state.ports["temporal"] = vars(ports)
        self.state.save()

    def start_prometheus(self, blocks: Path) -> None:
        assert self.temporal is not None
        port = self.state.ports.get("prometheus")
        if not isinstance(port, int) or procs.port_open(port):
            port = procs.free_port()
        (self.state.root / "prometheus").mkdir(exist_ok=True)
        self.prometheus = BenchPrometheus(self.state.root / "prometheus",
                                          {"temporal": [f"127.0.0.1:{self.temporal.ports.metrics}"]}, port=port,
                                          blocks=blocks)
        self.prometheus.start()
        self.state.ports["prometheus"] = port
        self.state.save()

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.temporal is not None:
            self.temporal.stop()
        procs.stop_embedded_postgres(self.pgdata)

    def dsn(self, database: str) -> str:
        return procs.database_dsn(self.server_dsn, database)

    def set_dynamic_config(self, extra: Mapping[str, object]) -> None:
        """Rewrite the server's dynamic config (polled every 10 s) as the bench's plus ``extra``."""
        assert self.temporal is not None
        path = self.temporal.root / "dynamicconfig.yaml"
        path.write_text(json.dumps({**temporal_server.DYNAMIC_CONFIG, **EXTRA_DYNAMIC_CONFIG, **extra}, indent=2)
                        + "\n")


async def gather_bounded(items: list[Any], concurrency: int, work: Callable[[Any], Awaitable[None]],
                         progress: str = "", every: int = 2000) -> None:
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(item: Any) -> None:
        nonlocal done
        async with gate:
            await work(item)
        done += 1
        if progress and done % every == 0:
            print(f"  {progress}: {done}/{len(items)}", flush=True)

    await asyncio.gather(*(one(i) for i in items))


LIMITED: collections.Counter[str] = collections.Counter()  # calls the server refused for a rate limit


_AGAIN = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
          RPCStatusCode.CANCELLED)


async def _retry_limited(call: Callable[[], Awaitable[object]], *, done_if_not_found: bool = False) -> None:
    """``call()`` again while the server is limiting or overloaded; ALREADY_EXISTS counts as done (and NOT_FOUND
    with ``done_if_not_found``: a terminate whose first attempt went through)."""
    while True:
        try:
            await call()
            return
        except RPCError as err:
            if err.status == RPCStatusCode.ALREADY_EXISTS or (
                    done_if_not_found and err.status == RPCStatusCode.NOT_FOUND):
                return
            if err.status not in _AGAIN:
                raise
            LIMITED[err.status.name] += 1
        await asyncio.sleep(0.2)


async def set_up(platform: Platform, n: int, concurrency: int) -> None:
    """Accounts, namespaces and their ownership in the template database; the namespaces on the server."""
    state = platform.state
    names = namespace_names(n)[state.namespaces:]
    if not names:
        return
    print(f"set-up: {len(names)} namespaces (once; kept in {state.root})", flush=True)
    conn = await asyncpg.connect(platform.server_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE_DB):
            await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    pool = await create_pool(platform.dsn(TEMPLATE_DB), max_size=20)
    assert platform.temporal is not None
    client = await harness.connect_when_healthy(platform.temporal.address)
    platform.set_dynamic_config(SETUP_DYNAMIC_CONFIG)
    began = time.monotonic()
    try:
        accounts = sorted({a for _, a in names})

        async def account(account_id: str) -> None:
            try:
                await accounts_store.insert_account(pool, account_id=account_id, name=account_id,
                                                    email=f"{account_id}@bench.test", plan="essentials")
            except accounts_store.AccountExists:
                pass

        async def reserve(pair: tuple[str, str]) -> None:
            ns, account_id = pair
            try:
                await namespaces_store.reserve_namespace(
                    pool, namespace=ns, name=ns.split(".")[0], account_id=account_id, retention_days=RETENTION_DAYS,
                    operation_id=str(uuid.uuid4()), workflow_id=create_workflow_id(ns))
            except namespaces_store.NamespaceExists:
                pass

        await gather_bounded(accounts, 20, account)
        await gather_bounded(names, 20, reserve, "reserved")
        t_rows = time.monotonic()
        await asyncio.sleep(11)  # the raised RegisterNamespace limit takes effect at the next poll

        async def register(pair: tuple[str, str]) -> None:
            ns, account_id = pair
            await _retry_limited(lambda: client.workflow_service.register_namespace(RegisterNamespaceRequest(
                namespace=ns, description=f"tcloud namespace of account {account_id}",
                owner_email=f"{account_id}@bench.test",
                workflow_execution_retention_period=Duration(seconds=RETENTION_DAYS * 86400),
                data={OWNER_KEY: account_id})))

        await gather_bounded(names, concurrency, register, "registered")
        t_registered = time.monotonic()

        async def served(pair: tuple[str, str]) -> None:
            for _ in range(600):
                try:
                    if await namespace_served(client, pair[0]):
                        return
                except RPCError:  # an overloaded server may cancel or refuse a call: ask again
                    LIMITED["served check"] += 1
                await asyncio.sleep(0.5)
            raise TimeoutError(f"{pair[0]} never served")

        # Every frontend reloads all namespaces at each refresh (1 s): the last ones registered stand for all.
        await gather_bounded(names[-concurrency:], concurrency, served)
        t_served = time.monotonic()

        async def activate(pair: tuple[str, str]) -> None:
            await namespaces_store.activate_namespace_and_open_ownership(pool, *pair)

        await gather_bounded(names, 20, activate)

        async def hold(pair: tuple[str, str]) -> None:
            start = StartWorkflowExecutionRequest(
                namespace=pair[0], workflow_id="bench-held", workflow_type=WorkflowType(name="BenchOrder"),
                task_queue=TaskQueue(name=TENANT_QUEUE), request_id=str(uuid.uuid4()),
                workflow_start_delay=Duration(seconds=365 * 86400))
            await _retry_limited(lambda: client.workflow_service.start_workflow_execution(start))

        await gather_bounded([p for k, p in enumerate(names, state.namespaces) if k % HELD_EVERY == 0],
                             concurrency, hold)
        t_done = time.monotonic()
    finally:
        await pool.close()
        platform.set_dynamic_config({})
    usage = await the_hours_usage(platform, len(names) + state.namespaces, concurrency)
    state.namespaces += len(names)
    state.setup_seconds = {"rows": round(t_rows - began, 1), "register": round(t_registered - t_rows, 1),
                           "served": round(t_served - t_registered, 1),
                           "activate_and_hold": round(t_done - t_served, 1), "usage": round(usage, 1),
                           "total": round(t_done - began + usage, 1)}
    state.save()
    print(f"set-up took {state.setup_seconds['total']:.0f} s: {state.setup_seconds}; refused for a limit "
          f"{dict(LIMITED)}", flush=True)
    await asyncio.sleep(11)  # back to the platform's dynamic config before anything is measured


async def the_hours_usage(platform: Platform, n: int, concurrency: int) -> float:
    """A workflow started, signalled and terminated in every namespace: actions and storage in this hour."""
    assert platform.temporal is not None
    client = await harness.connect_when_healthy(platform.temporal.address)
    tag = secrets.token_hex(3)
    began = time.monotonic()

    async def order(pair: tuple[str, str]) -> None:
        ns = pair[0]
        wf = f"bench-order-{tag}"
        # Request ids fixed before the first attempt: a retry of a call that went through is not done twice.
        # Delayed: terminated before its first workflow task, it never reaches the task queue (10,000 task queues
        # loaded at once swamped the server's matching service here, and no worker would poll them anyway).
        start = StartWorkflowExecutionRequest(
            namespace=ns, workflow_id=wf, workflow_type=WorkflowType(name="BenchOrder"),
            task_queue=TaskQueue(name=TENANT_QUEUE), request_id=str(uuid.uuid4()),
            workflow_start_delay=Duration(seconds=3600))
        await _retry_limited(lambda: client.workflow_service.start_workflow_execution(start))
        execution = WorkflowExecution(workflow_id=wf)
        signal_request = SignalWorkflowExecutionRequest(
            namespace=ns, workflow_execution=execution, signal_name="pay", request_id=str(uuid.uuid4()))
        await _retry_limited(lambda: client.workflow_service.signal_workflow_execution(signal_request))
        terminate = TerminateWorkflowExecutionRequest(namespace=ns, workflow_execution=execution, reason="bench")
        await _retry_limited(lambda: client.workflow_service.terminate_workflow_execution(terminate),
                             done_if_not_found=True)

    await gather_bounded(namespace_names(n), concurrency, order, "the hour's usage")
    return time.monotonic() - began


async def fresh_database(platform: Platform) -> str:
    """A copy of the template database for this run (earlier runs' copies dropped)."""
    conn = await asyncpg.connect(platform.server_dsn)
    try:
        for name in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", RUN_DB_PREFIX + "%"):
            await conn.execute(f'DROP DATABASE "{name["datname"]}" WITH (FORCE)')
        name = RUN_DB_PREFIX + secrets.token_hex(3)
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    return name


def wait_for_hour_end(hour: datetime) -> None:
    remaining = (hour + HOUR - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        print(f"waiting {remaining / 60:.1f} min for the hour {hour_id(hour)} to close", flush=True)
        time.sleep(remaining + 1)


def the_hours_counter(root: Path, hour: datetime, n: int) -> tuple[Path, dict[str, int], float]:
    """The ``action`` counter of every namespace for ``hour`` as TSDB blocks; the true billable count of each."""
    root.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    namespaces = [ns for ns, _ in namespace_names(n)]
    until = min(hour + HOUR + timedelta(minutes=2), datetime.now(UTC) - timedelta(seconds=30))
    truth = write_openmetrics(root / "action.om", namespaces, TYPES[:ACTION_TYPES], hour, SCRAPE_SECONDS,
                              seed=int(hour.timestamp()), history=timedelta(seconds=SCRAPE_SECONDS), until=until)
    shutil.rmtree(root / "blocks", ignore_errors=True)
    run([procs.binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(root / "action.om"),
         str(root / "blocks")])
    (root / "action.om").unlink()
    return root / "blocks", truth, time.monotonic() - began


def wait_for_scrape_past(prom: PrometheusConnect, end: datetime) -> None:
    for _ in range(600):
        latest = usage_sources.latest_scrape(prom)
        if latest is not None and latest >= end:
            return
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus never scraped past {end}")


@dataclass
class Measured:
    seconds: float
    per_collector: dict[str, float]
    outputs: dict[str, CollectHourOutput]
    python_calls: dict[str, int]
    server_calls: dict[str, int]
    prometheus_calls: dict[str, int]
    cpu: dict[str, float]
    rows: dict[str, tuple[int, int]]  # metric -> (rows, namespaces)
    collected: list[tuple[str, datetime]]
    actions: dict[str, int]  # namespace -> actions in the ledger


async def _wait_polling(client: Client, settings: Settings, worker: asyncio.Task[None]) -> None:
    for _ in range(600):
        if worker.done():
            worker.result()
        info = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=settings.control_namespace, task_queue=TaskQueue(name=settings.task_queue)))
        if info.pollers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the worker never polled")


async def collect(platform: Platform, settings: Settings, hour: datetime, *, counter: CallCounter,
                  profiled: bool = False) -> Measured:
    """``UsageHourlyWorkflow`` for the hour through the real worker, measured."""
    assert platform.temporal is not None and platform.prometheus is not None
    metrics_port, prom_port = platform.temporal.ports.metrics, platform.prometheus.port
    pids = {"temporal server": platform.temporal.managed.popen.pid,  # type: ignore[union-attr]
            "postgres": postmaster_pid(platform.pgdata),
            "prometheus": platform.prometheus.managed.popen.pid}  # type: ignore[union-attr]
    stop = asyncio.Event()
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=f"127.0.0.1:{settings.worker_metrics_port}")))
    worker = asyncio.create_task(run_worker(settings, stop=stop, runtime=runtime))
    client = await connect(settings)
    await _wait_polling(client, settings, worker)
    await asyncio.sleep(2)  # let the server's counters settle before the first reading
    calls_before = counter.snapshot()
    server_before = server_requests(metrics_port)
    prom_before = prometheus_requests(prom_port)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own_before = sum(os.times()[:2])
    profile = cProfile.Profile() if profiled else None
    began = time.monotonic()
    if profile:
        profile.enable()
    hourly = await client.execute_workflow(UsageHourlyWorkflow.run, UsageHourlyInput(through=hour + HOUR),
                                           id=f"usage/hourly-bench-{secrets.token_hex(3)}",
                                           task_queue=settings.task_queue)
    seconds = time.monotonic() - began
    if profile:
        profile.disable()
        print("profile of the event loop's thread (the worker's workflows and async activities; the actions "
              "collector's Prometheus work runs in a thread of its own), by own time:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    own = sum(os.times()[:2]) - own_before
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["worker + bench (this process)"] = own
    calls = diff(counter.snapshot(), calls_before)
    if hourly.collected != {c: [hour] for c in COLLECTORS}:
        raise RuntimeError(f"the hourly run collected {hourly.collected}, skipped {hourly.skipped}")
    outputs: dict[str, CollectHourOutput] = {}
    per_collector: dict[str, float] = {}
    for c in COLLECTORS:
        handle = client.get_workflow_handle_for(UsageCollectHourWorkflow.run, collect_workflow_id(c, hour))
        outputs[c] = await handle.result()
        desc = await handle.describe()
        assert desc.close_time is not None
        per_collector[c] = (desc.close_time - desc.start_time).total_seconds()
    await asyncio.sleep(3)  # the server reports its counters every second or so
    server_calls = diff(server_requests(metrics_port), server_before)
    prom_calls = diff(prometheus_requests(prom_port), prom_before)
    stop.set()
    await worker
    pool = await create_pool(settings.postgres_dsn.get_secret_value())
    try:
        rows = {r["metric"]: (r["n"], r["ns"]) for r in await pool.fetch(
            "SELECT metric, count(*) AS n, count(DISTINCT namespace) AS ns FROM usage_ledger WHERE hour = $1 "
            "GROUP BY metric", hour)}
        collected = [(r["collector"], r["hour"]) for r in await pool.fetch(
            "SELECT collector, hour FROM usage_collected_hours ORDER BY collector, hour")]
        actions = {r["namespace"]: int(r["quantity"]) for r in await pool.fetch(
            "SELECT namespace, quantity FROM usage_ledger WHERE hour = $1 AND metric = 'actions'", hour)}
    finally:
        await pool.close()
    return Measured(seconds, per_collector, outputs, calls, server_calls, prom_calls, cpu, rows, collected, actions)


def report(m: Measured, n: int, hour: datetime, truth: dict[str, int]) -> None:
    print(f"namespaces                {n}")
    print(f"hour                      {hour_id(hour)}: UsageHourlyWorkflow -> usage/actions, usage/storage children")
    print(f"collection wall time      {m.seconds:.1f} s  (target <= 60 s: {'met' if m.seconds <= 60 else 'MISSED'})")
    for c, s in m.per_collector.items():
        o = m.outputs[c]
        extra = f", {o.prometheus_queries} Prometheus queries" if c == "actions" else ""
        print(f"  {c:<8} child workflow  {s:.1f} s  ({o.namespaces} namespaces with usage{extra})")
    print(f"Temporal calls by Python  {sum(m.python_calls.values())}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(m.python_calls.items(), key=lambda kv: -kv[1])))
    internal = {k.split("/", 1)[1]: v for k, v in m.server_calls.items() if k.startswith("internal_frontend/")}
    print(f"Temporal calls at server  {sum(internal.values())} on the internal frontend:")
    for where, what in (("control", "control namespace (the worker)"),
                        ("tenants", "other namespaces (the tenants', and the server's own system namespace)"),
                        ("none", "no namespace")):
        ops = {k.split("/", 1)[1]: v for k, v in internal.items() if k.startswith(where + "/")}
        if ops:
            print(f"  {what}: {sum(ops.values())}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])))
    api = {k: v for k, v in m.prometheus_calls.items() if k.startswith("/api/")}
    print(f"Prometheus HTTP requests  {sum(api.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(api.items())))
    print("CPU seconds               " + ", ".join(f"{k} {v:.1f}" for k, v in m.cpu.items())
          + f" (2 cores x {m.seconds:.0f} s = {2 * m.seconds:.0f})")
    print("ledger rows written       " + ", ".join(f"{k} {r} rows / {ns} namespaces"
                                                    for k, (r, ns) in sorted(m.rows.items())))
    print(f"hours marked collected    {[(c, hour_id(h)) for c, h in m.collected]}")
    wrong = [ns for ns in set(truth) | set(m.actions) - {CONTROL_NAMESPACE}
             if truth.get(ns, 0) != m.actions.get(ns, 0)]
    print(f"actions vs the counter    {len(truth) - len([w for w in wrong if w in truth])}/{len(truth)} namespaces "
          "equal" + (f"; first wrong: {sorted(wrong)[:3]}" if wrong else ""))


async def through_temporal(args: argparse.Namespace) -> None:
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)  # stop what was started
    temporal_server.configured_process = _configured_process_for_bench(  # type: ignore[assignment]
        temporal_server.configured_process)
    counter = CallCounter()
    counter.install()
    args.state.mkdir(parents=True, exist_ok=True)
    state = State.load(args.state)
    platform = Platform(state)
    try:
        t = time.monotonic()
        await asyncio.to_thread(platform.start)
        print(f"platform started in {time.monotonic() - t:.1f} s (state {args.state})", flush=True)
        if state.namespaces < args.namespaces:
            await set_up(platform, args.namespaces, args.concurrency)
        print(f"set-up (once, {state.namespaces} namespaces): {state.setup_seconds}", flush=True)
        hour = floor_hour(datetime.now(UTC)) - HOUR
        if args.usage_only:
            seconds = await the_hours_usage(platform, args.namespaces, args.concurrency)
            print(f"the hour's usage: {3 * args.namespaces} calls in {seconds:.0f} s (refused for a limit "
                  f"{dict(LIMITED)})", flush=True)
            return
        if args.wait:
            hour = floor_hour(datetime.now(UTC))
            seconds = await the_hours_usage(platform, args.namespaces, args.concurrency)
            print(f"the hour's usage: {3 * args.namespaces} calls in {seconds:.0f} s (refused for a limit "
                  f"{dict(LIMITED)})", flush=True)
            await asyncio.to_thread(wait_for_hour_end, hour)
        blocks, truth, seconds = await asyncio.to_thread(the_hours_counter, args.state / "counter", hour,
                                                         args.namespaces)
        print(f"the hour's action counter: {sum(truth.values())} actions in {len(truth)} namespaces, "
              f"{ACTION_TYPES} types sampled every {SCRAPE_SECONDS} s, loaded in {seconds:.0f} s", flush=True)
        await asyncio.to_thread(platform.start_prometheus, blocks)
        assert platform.prometheus is not None and platform.temporal is not None
        await asyncio.to_thread(wait_for_scrape_past, PrometheusConnect(platform.prometheus.url, disable_ssl=True),
                                hour + HOUR)
        database = await fresh_database(platform)
        settings = Settings(
            state_dir=args.state, temporal_address=platform.temporal.address,
            temporal_public_address=platform.temporal.public_address, control_namespace=CONTROL_NAMESPACE,
            task_queue="bench-usage-" + secrets.token_hex(3), postgres_dsn=SecretStr(platform.dsn(database)),
            prometheus_url=platform.prometheus.url, schedules_enabled=False, worker_metrics_port=procs.free_port())
        measured = await collect(platform, settings, hour, counter=counter, profiled=args.profile)
        report(measured, args.namespaces, hour, truth)
    finally:
        await asyncio.to_thread(platform.stop)


# --- Synthetic: the actions collector's code on a Prometheus loaded with promtool --------------------------------

TYPES = ["grpc_StartWorkflowExecution", "command_ScheduleActivityTask", "command_StartTimer",
         "command_RecordMarker"]


def write_openmetrics(path: Path, namespaces: list[str], types: list[str], hour: datetime, step: int, seed: int,
                      history: timedelta = 2 * HOUR, until: datetime | None = None) -> dict[str, int]:
    """Samples from ``history`` before ``hour`` to ``until`` (a few minutes after it); returns the true billable
    count in it.

    Restarts are per process (scrape target): every series of a restarted instance starts again from zero, and
    some of them may climb back above their old value before the first scrape.
    """
    rng = random.Random(seed)
    start = int((hour - history).timestamp())
    stop = int((until or hour + HOUR + timedelta(minutes=5)).timestamp())
    lo, hi = int(hour.timestamp()), int((hour + HOUR).timestamp())
    # Eight frontend processes share the namespaces; two of them restart during the hour.
    instances = [f"10.0.0.{i}:9090" for i in range(8)]
    restart_at = {instances[1]: rng.randrange(lo, hi), instances[5]: rng.randrange(lo, hi)}
    truth: dict[str, int] = {}
    with path.open("w") as out:
        out.write("# TYPE action unknown\n")
        for n, ns in enumerate(namespaces):
            label = metering.sanitize_label_value(ns)
            instance = instances[n % len(instances)]
            for kind in types:
                rng = random.Random(f"{seed}/{ns}/{kind}")  # the same series whatever ``until`` cuts off
                # 1% of series are new within the hour: they count from zero.
                born = rng.randrange(lo, hi) if rng.random() < 0.01 else start
                value = rng.randrange(0, 1000) if born == start else 0
                reset_at = restart_at.get(instance)
                for ts in range(start, stop, step):
                    if ts < born:
                        continue
                    if reset_at is not None and ts >= reset_at:
                        value, reset_at = 0, None  # the process restarted: counts since then
                    inc = rng.randrange(0, 20)
                    value += inc
                    if lo <= ts < hi and metering.is_billable_action_type(kind):
                        truth[ns] = truth.get(ns, 0) + inc
                    out.write(f'action{{action_type="{kind}",instance="{instance}",job="temporal",'
                              f'namespace="{label}",service_name="frontend"}} {value} {ts}\n')
        out.write("# EOF\n")
    return truth


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def write_ledger(dsn: str, hour: datetime, owners: dict[str, str | None],
                       counts: dict[str, dict[str, int]], labels: dict[str, str]) -> float:
    pool: asyncpg.Pool = await create_pool(dsn)
    try:
        rows = [LedgerRow(labels[label], "actions", Decimal(sum(per.values())), owners[labels[label]])
                for label, per in counts.items()]
        began = time.perf_counter()
        await usage_ledger.write_hour(pool, "actions", hour, ["actions"], rows, final=True)
        return time.perf_counter() - began
    finally:
        await pool.close()


def synthetic(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    hour = floor_hour(datetime.now(UTC)) - 3 * HOUR
    namespaces = [f"orders{i}.acct{i:05d}" for i in range(args.namespaces)]
    types = TYPES[: max(1, min(args.types, len(TYPES)))]
    prom_proc = None
    try:
        t0 = time.perf_counter()
        truth = write_openmetrics(root / "data.om", namespaces, types, hour, args.step, args.seed)
        t1 = time.perf_counter()
        run([procs.binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(root / "data.om"),
             str(root / "tsdb")])
        t2 = time.perf_counter()
        config = root / "prometheus.yml"
        config.write_text(procs.prometheus_config({}, interval="15s"))
        port = procs.free_port()
        proc = procs.prometheus_process(config=config, data_dir=root / "tsdb", port=port, log=root / "prom.log")
        prom_proc = proc.start()
        procs.wait_until(lambda: procs.prometheus_ready(port), timeout=60, what="prometheus", proc=prom_proc,
                         log=proc.log)
        prom = PrometheusConnect(url=f"http://127.0.0.1:{port}", disable_ssl=True)

        began = time.perf_counter()
        labels = metering.namespace_label_map(namespaces)
        window = usage_sources.action_window(prom, hour, hour + HOUR, namespace_label="namespace",
                                             baseline_lookback="15d")
        query_and_compute = time.perf_counter() - began
        got = {labels[label]: sum(per.values()) for label, per in window.counts.items()}
        wrong = [ns for ns in namespaces if got.get(ns, 0) != truth.get(ns, 0)]

        write_seconds = 0.0
        if not args.no_db:
            pgdata = root / "pg"
            server = procs.start_embedded_postgres(pgdata)
            try:
                conn_dsn = procs.database_dsn(server, "postgres")
                owners: dict[str, str | None] = {}
                write_seconds = asyncio.run(_with_accounts(conn_dsn, hour, namespaces, window.counts, labels, owners))
            finally:
                procs.stop_embedded_postgres(pgdata)

        series = args.namespaces * len(types)
        samples = series * len(range(int((hour - 2 * HOUR).timestamp()),
                                     int((hour + HOUR + timedelta(minutes=5)).timestamp()), args.step))
        print(f"namespaces            {args.namespaces}")
        print(f"series / samples      {series} / {samples} (one every {args.step} s)")
        print(f"openmetrics written   {t1 - t0:.1f} s; promtool load {t2 - t1:.1f} s")
        print(f"prometheus queries    {window.queries} (constant: independent of the number of namespaces)")
        print(f"query + exact deltas  {query_and_compute:.2f} s")
        print(f"ledger write          {write_seconds:.2f} s" + (" (skipped)" if args.no_db else ""))
        total = query_and_compute + write_seconds
        print(f"collect one hour      {total:.2f} s  (target <= 10 s: {'met' if total <= 10 else 'MISSED'})")
        print(f"exact vs generator    {len(namespaces) - len(wrong)}/{len(namespaces)} namespaces equal"
              + (f"; first wrong: {wrong[:3]}" if wrong else ""))
    finally:
        if prom_proc is not None and prom_proc.poll() is None:
            procs.stop_pid(prom_proc.pid)
        shutil.rmtree(root, ignore_errors=True)


async def _with_accounts(dsn: str, hour: datetime, namespaces: list[str], counts: dict[str, dict[str, int]],
                         labels: dict[str, str], owners: dict[str, str | None]) -> float:
    """Accounts and ownership rows for every namespace, then the timed ledger write of the hour."""
    pool: asyncpg.Pool = await create_pool(dsn)
    try:
        accounts = [(ns.split(".")[1], ns) for ns in namespaces]
        await pool.executemany("INSERT INTO accounts (id, name, email) VALUES ($1, $1, 'bench@example.test')",
                               [(a,) for a, _ in accounts])
        for account, ns in accounts:
            owners[ns] = account
    finally:
        await pool.close()
    return await write_ledger(dsn, hour, owners, counts, labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=10_000)
    ap.add_argument("--synthetic", action="store_true", help="the actions collector's code alone (see above)")
    ap.add_argument("--state", type=Path, default=DEFAULT_STATE, help="where the platform's parts are kept")
    ap.add_argument("--wait", action="store_true",
                    help="run the hour's usage, wait for the hour to close, collect it (default: the last hour)")
    ap.add_argument("--usage-only", action="store_true",
                    help="only run the hour's usage (for a later run's collection of this hour)")
    ap.add_argument("--profile", action="store_true", help="profile the worker's event loop during the collection")
    ap.add_argument("--concurrency", type=int, default=32, help="set-up and usage calls at once")
    ap.add_argument("--types", type=int, default=2, help="synthetic: action types per namespace (up to 4)")
    ap.add_argument("--step", type=int, default=300, help="synthetic: seconds between samples (scrape interval)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--no-db", action="store_true", help="synthetic: skip the Postgres ledger write")
    args = ap.parse_args()
    if args.synthetic:
        synthetic(args)
    else:
        asyncio.run(through_temporal(args))
        procs.exit_without_finalizing(0)


if __name__ == "__main__":
    main()
