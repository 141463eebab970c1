"""Collecting one hour of actions for 10,000 namespaces from a real Prometheus loaded with synthetic series.

    .venv/bin/python bench/bench_usage_collect.py [--namespaces 10000] [--types 2] [--step 300]

Writes the server's ``action`` counter for every namespace (with counter resets in some series) as OpenMetrics,
loads it with ``promtool tsdb create-blocks-from openmetrics``, starts Prometheus on those blocks, then times what
the ``actions`` collector does for one hour: its Prometheus queries (a constant number), the exact deltas, and the
ledger write into an embedded Postgres. Checks every namespace's count against the generator's own and prints the
figures. Target: <= 10 s for 10,000 namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from prometheus_api_client import PrometheusConnect

from activities import usage_ledger, usage_sources
from activities.usage_ledger import LedgerRow
from launcher import procs
from tcloud.domain import metering
from tcloud.domain.metering import HOUR, floor_hour
from tcloud.platform.db import create_pool

TYPES = ["grpc_StartWorkflowExecution", "command_ScheduleActivityTask", "command_StartTimer",
         "command_RecordMarker"]


def write_openmetrics(path: Path, namespaces: list[str], types: list[str], hour: datetime,
                      step: int, seed: int) -> dict[str, int]:
    """Samples from two hours before ``hour`` to a few minutes after it; returns the true billable count in it.

    Restarts are per process (scrape target): every series of a restarted instance starts again from zero, and
    some of them may climb back above their old value before the first scrape.
    """
    rng = random.Random(seed)
    start = int((hour - 2 * HOUR).timestamp())
    stop = int((hour + HOUR + timedelta(minutes=5)).timestamp())
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=10_000)
    ap.add_argument("--types", type=int, default=2, help="action types per namespace (up to 4)")
    ap.add_argument("--step", type=int, default=300, help="seconds between samples (the scrape interval)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--no-db", action="store_true", help="skip the Postgres ledger write")
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
