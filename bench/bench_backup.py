"""Backup throughput and memory: streaming pg_dump into a store vs a plain ``pg_dump > /dev/null``.

Starts its own embedded PostgreSQL in a temp directory, fills a small and a large database, then for each:
times ``pg_dump -Fc > /dev/null`` (best of N) and the backup path (``pg_dump_stream`` → store, sha256 on the
fly) in a fresh child process whose peak RSS (``ru_maxrss``, the Python process only) it reports.

    .venv/bin/python bench/bench_backup.py [--large-rows 1000000] [--store filesystem|oci] [--repeat 2]

Targets: throughput ratio >= 0.8, peak memory flat between small and large and <= 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FILL = """
CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(14, 4), payload jsonb, created timestamptz);
INSERT INTO items
SELECT g, md5(g::text) || md5((g * 7)::text), g * 1.5, jsonb_build_object('g', g, 'h', md5(g::text)),
       timestamptz '2026-01-01' + g * interval '1 second'
  FROM generate_series(1, {rows}) g;
"""


def _child(dsn: str, store_kind: str, target: str) -> None:
    """Run one backup of ``dsn`` into the store and print seconds, bytes and peak RSS as JSON."""
    from tcloud.adapters.backups import pgtools
    from tcloud.adapters.backups.filesystem import FilesystemStore
    from tcloud.adapters.backups.store import BackupStore

    async def run() -> dict[str, object]:
        store: BackupStore
        if store_kind == "oci":
            from tcloud.adapters.backups.oci_store import OciObjectStore
            from tcloud.settings import Settings

            endpoint, config = target.split(",", 1)
            store = await OciObjectStore.from_settings(Settings(
                backup_store="oci", oci_endpoint=endpoint, oci_config_file=Path(config), oci_bucket="bench"))
        else:
            store = FilesystemStore(Path(target))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        stored = await store.put_stream("bench/db.pgdump", pgtools.pg_dump_stream(dsn), {"bench": "1"})
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "bytes": stored.size, "rss_before_kb": rss_before,
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}

    print(json.dumps(asyncio.run(run())))


def _serve_oci(key_dir: str, port: int) -> None:
    """Run the signature-checking OCI fake (tests/oci_fake.py) until killed."""
    from aiohttp import web

    from tests import oci_fake

    key = oci_fake.make_api_key(Path(key_dir))
    fake = oci_fake.FakeObjectStorage(key)
    web.run_app(fake.app(), host="127.0.0.1", port=port, print=None)


def _plain_pg_dump(dsn: str) -> float:
    from tcloud.adapters.backups import pgtools

    target, env = pgtools.libpq_target(dsn)
    started = time.perf_counter()
    subprocess.run([pgtools.pg_binary("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                    "--dbname", target], stdout=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - started


def _ours(dsn: str, store_kind: str, target: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", dsn, store_kind, target], capture_output=True,
                         text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def _create(server_dsn: str, name: str, rows: int) -> str:
    import asyncpg

    from launcher import procs

    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = procs.database_dsn(server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await conn.execute(FILL.format(rows=rows))
    size = await conn.fetchval("SELECT pg_database_size(current_database())")
    await conn.close()
    print(f"{name}: {rows} rows, database {size / 1e6:.1f} MB")
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["filesystem", "oci"], default="filesystem")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best time counts")
    args = parser.parse_args()

    from launcher import procs

    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        root = Path(tmp)
        pgdata = root / "pg"
        server_dsn = procs.start_embedded_postgres(pgdata)
        fake: subprocess.Popen[bytes] | None = None
        try:
            target = str(root / "store")
            if args.store == "oci":
                port = procs.free_port()
                (root / "oci").mkdir()
                fake = subprocess.Popen([sys.executable, __file__, "--serve-oci", str(root / "oci"), str(port)],
                                        cwd=REPO)
                procs.wait_until(lambda: procs.port_open(port), timeout=30, what="oci fake", proc=fake)
                target = f"http://127.0.0.1:{port},{root / 'oci' / 'oci_config'}"
            dbs = {"small": asyncio.run(_create(server_dsn, "bench_small", args.small_rows)),
                   "large": asyncio.run(_create(server_dsn, "bench_large", args.large_rows))}
            print(f"\nstore: {args.store}; best of {args.repeat}")
            print(f"{'db':<6} {'dump MB':>8} {'pg_dump s':>10} {'backup s':>9} {'MB/s':>7} {'ratio':>6} "
                  f"{'peak RSS MB':>12} {'RSS at start MB':>16}")
            for label, dsn in dbs.items():
                plain = min(_plain_pg_dump(dsn) for _ in range(args.repeat))
                runs = [_ours(dsn, args.store, target) for _ in range(args.repeat)]
                best = min(runs, key=lambda r: r["seconds"])
                peak = max(r["peak_rss_kb"] for r in runs) / 1024
                start_rss = max(r["rss_before_kb"] for r in runs) / 1024
                mb = best["bytes"] / 1e6
                print(f"{label:<6} {mb:>8.1f} {plain:>10.2f} {best['seconds']:>9.2f} {mb / best['seconds']:>7.1f} "
                      f"{plain / best['seconds']:>6.2f} {peak:>12.1f} {start_rss:>16.1f}")
            print("\nratio = pg_dump > /dev/null time / backup time (target >= 0.8); peak RSS is the backup "
                  "process's own (pg_dump is a child), target flat and <= 100 MB")
        finally:
            if fake is not None:
                fake.terminate()
                fake.wait(timeout=10)
            procs.stop_embedded_postgres(pgdata)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-oci":
        _serve_oci(sys.argv[2], int(sys.argv[3]))
    else:
        main()
