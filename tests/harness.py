"""The real parts for tests: each started on free ports in a temp dir, each stopped afterwards.

They come from ``launcher.procs``, the same code ``deploy.sh local`` runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client

from launcher import procs, temporal_server
from tcloud.platform.temporal import ensure_namespace, ensure_search_attributes
from tcloud.settings import Settings


@dataclass
class Managed:
    """A started process we own."""

    proc: procs.Process
    popen: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.popen = self.proc.start()
        return self.popen

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            procs.stop_pid(self.popen.pid)
            self.popen.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=5)


@dataclass
class TemporalServer:
    """The official Temporal server (launcher.temporal_server): PostgreSQL, JWT authorization, two doors.

    Its databases are new ones on ``server_dsn``'s PostgreSQL; tokens are checked against ``jwks_uri``.
    ``address`` is the internal frontend (the platform's door: no token), ``public_address`` the tenants' door.
    """

    root: Path
    server_dsn: str
    jwks_uri: str
    namespaces: tuple[str, ...] = ()
    with_ui: bool = False
    ports: temporal_server.ServerPorts = field(default_factory=temporal_server.ServerPorts.free)
    ui_port: int = field(default_factory=procs.free_port)
    databases: tuple[str, str] = field(default_factory=lambda: (
        f"temporal_{secrets.token_hex(4)}", f"temporal_{secrets.token_hex(4)}_visibility"))
    managed: Managed | None = None
    ui: Managed | None = None
    prepared: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports.internal_frontend}"

    @property
    def public_address(self) -> str:
        return f"127.0.0.1:{self.ports.frontend}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> None:
        """Start the server (its databases set up on the first start) and wait until it serves its namespaces."""
        self.root.mkdir(parents=True, exist_ok=True)
        first = not self.prepared
        if first:
            temporal_server.prepare_databases(self.server_dsn, databases=self.databases,
                                              log=self.root / "temporal-schema.log")
            self.prepared = True
        proc = temporal_server.configured_process(
            self.root, ports=self.ports, server_dsn=self.server_dsn, jwks_uris=[self.jwks_uri], jwks_refresh="1m",
            history_shards=4, databases=self.databases, log=self.root / "temporal.log")
        self.managed = Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: temporal_server.server_ready(self.ports), timeout=60, what="temporal", proc=popen,
                         log=proc.log)
        if first and self.namespaces:
            procs.run_coroutine(register_namespaces(self.address, self.namespaces))
        if self.with_ui and (self.ui is None or self.ui.popen is None or self.ui.popen.poll() is not None):
            ui = temporal_server.ui_process(self.root, grpc_address=self.address, port=self.ui_port,
                                            default_namespace=(self.namespaces or ("default",))[0],
                                            log=self.root / "temporal-ui.log")
            self.ui = Managed(ui)
            ui_popen = self.ui.start()
            procs.wait_until(lambda: temporal_server.ui_ready(self.ui_port), timeout=30, what="temporal-ui",
                             proc=ui_popen, log=ui.log)

    def stop(self) -> None:
        if self.managed:
            self.managed.stop()

    def stop_all(self) -> None:
        if self.ui:
            self.ui.stop()
        self.stop()

    def kill(self) -> None:
        if self.managed:
            self.managed.kill()

    def restart(self) -> None:
        """Stop and start on the same databases and ports: workflows and namespaces survive."""
        self.stop()
        self.start()


TemporalFactory = Callable[..., TemporalServer]


@dataclass
class CustomerUi:
    """The customers' Temporal UI server (launcher.temporal_server.customer_ui_config): OIDC login against the API
    at ``settings.oidc_issuer``, Temporal through the UI gateway at ``gateway_address``.

    Its start fetches the provider's discovery document, so the API must answer by then; start it with
    ``await asyncio.to_thread(ui.start)`` when the API runs in the caller's event loop.
    """

    root: Path
    settings: Settings
    gateway_address: str
    managed: Managed | None = None

    @property
    def port(self) -> int:
        return urlsplit(self.settings.customer_ui_url).port or 80

    @property
    def url(self) -> str:
        return self.settings.customer_ui_url.rstrip("/")

    def start(self) -> None:
        secret = self.settings.oidc_client_secret
        assert secret is not None, "the customers' UI needs TCLOUD_OIDC_CLIENT_SECRET"
        config = temporal_server.customer_ui_config(
            gateway_address=self.gateway_address, port=self.port, ui_url=self.url,
            issuer=self.settings.oidc_issuer, client_id=self.settings.oidc_client_id,
            client_secret=secret.get_secret_value(), callback_url=self.settings.customer_ui_redirect_uris[0],
            session_seconds=self.settings.oidc_session_seconds)
        proc = temporal_server.customer_ui_process(self.root, config, log=self.root / "customer-ui.log")
        self.managed = Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: temporal_server.ui_ready(self.port), timeout=30, what="customers' temporal-ui",
                         proc=popen, log=proc.log)

    def stop(self) -> None:
        if self.managed:
            self.managed.stop()


async def connect_when_healthy(address: str, wait_seconds: float = 60) -> Client:
    """A client of ``address`` once the frontend there stops answering "Frontend is not healthy yet"."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError as err:
            if "not healthy" not in str(err) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.2)


async def register_namespaces(address: str, namespaces: Sequence[str]) -> None:
    """Register ``namespaces`` with the platform's search attributes, through the internal frontend, all at once
    (each is usable only once the frontend's namespace cache has refreshed)."""
    client = await connect_when_healthy(address)
    limit = asyncio.Semaphore(16)

    async def one(name: str) -> None:
        async with limit:
            await ensure_namespace(client, name, retention_days=1, wait_seconds=60)
            await ensure_search_attributes(client, name)

    await asyncio.gather(*(one(name) for name in namespaces))


@dataclass
class Prometheus:
    root: Path
    targets: dict[str, list[str]]
    port: int = field(default_factory=procs.free_port)
    interval: str = "1s"
    managed: Managed | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.root / "prometheus.yml"
        config.write_text(procs.prometheus_config(self.targets, interval=self.interval))
        proc = procs.prometheus_process(config=config, data_dir=self.root / "prometheus", port=self.port,
                                        log=self.root / "prometheus.log")
        self.managed = Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: procs.prometheus_ready(self.port), timeout=30, what="prometheus", proc=popen,
                         log=proc.log)

    def stop(self) -> None:
        if self.managed:
            self.managed.stop()


@dataclass
class LocalStripe:
    root: Path
    port: int = field(default_factory=procs.free_port)
    managed: Managed | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        proc = procs.localstripe_process(port=self.port, log=self.root / "localstripe.log", store_file=None)
        self.managed = Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: procs.localstripe_ready(self.port), timeout=30, what="localstripe", proc=popen,
                         log=proc.log)

    def stop(self) -> None:
        if self.managed:
            self.managed.stop()


@dataclass
class Postgres:
    pgdata: Path
    server_dsn: str = ""

    def start(self) -> None:
        self.server_dsn = procs.start_embedded_postgres(self.pgdata)

    def stop(self) -> None:
        procs.stop_embedded_postgres(self.pgdata)
        shutil.rmtree(self.pgdata, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return procs.database_dsn(self.server_dsn, database)


def api_client(settings: Settings) -> TestClient:
    """The real API app on a real socket; use as ``async with api_client(settings) as client``."""
    from api.app import create_app

    return TestClient(TestServer(create_app(settings)))


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as TCLOUD_* variables, for a child process (worker, API) under test."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, dict):
            env[f"TCLOUD_{name.upper()}"] = json.dumps(
                {k: v.get_secret_value() if hasattr(v, "get_secret_value") else v for k, v in value.items()})
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"TCLOUD_{name.upper()}"] = str(raw)
    return env


def worker_process(settings: Settings, log: Path) -> Managed:
    """The real worker as a child process (for crash tests); call ``.start()`` and wait for readiness."""
    env = {**os.environ, **settings_env(settings)}
    return Managed(procs.Process("worker", [sys.executable, "-m", "workers.main"], log, env=env,
                                 cwd=Path(__file__).resolve().parents[1]))


def wait_worker_ready(settings: Settings, managed: Managed, timeout: float = 60) -> None:
    procs.wait_until(lambda: procs.http_ok(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"),
                     timeout=timeout, what="worker", proc=managed.popen, log=managed.proc.log)


def wait_for(predicate, *, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Synchronous polling helper for tests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
