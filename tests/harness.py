"""The real parts for tests: each started on free ports in a temp dir, each stopped afterwards.

They come from ``tcloud.local.procs``, the same code ``deploy.sh local`` runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from tcloud.local import procs
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
    root: Path
    ports: procs.TemporalPorts = field(default_factory=lambda: procs.TemporalPorts(
        grpc=procs.free_port(), ui=procs.free_port(), http=procs.free_port(), metrics=procs.free_port()))
    namespaces: tuple[str, ...] = ()
    managed: Managed | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def start(self) -> None:
        proc = procs.temporal_process(db_file=self.root / "temporal.db", ports=self.ports,
                                      log=self.root / "temporal.log", namespaces=self.namespaces, headless=False)
        self.managed = Managed(proc)
        popen = self.managed.start()
        procs.wait_until(lambda: procs.temporal_ready(self.ports), timeout=60, what="temporal", proc=popen,
                         log=proc.log)

    def stop(self) -> None:
        if self.managed:
            self.managed.stop()

    def kill(self) -> None:
        if self.managed:
            self.managed.kill()

    def restart(self) -> None:
        """Stop and start on the same SQLite file and ports: workflows and namespaces survive."""
        self.stop()
        self.start()


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
