"""Fixtures that start the real parts: the official Temporal server (PostgreSQL, JWT authorization), embedded
PostgreSQL, Prometheus, localstripe, the Temporal UI server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import stripe
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment

from api import jwt
from launcher import procs
from tcloud.platform.clients import stripe_client
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import DATA_CONVERTER, connect
from tcloud.settings import Settings
from tests import harness
from workers.main import run_worker

pytest_plugins = ["tests.figures"]

TemporalFactory = harness.TemporalFactory

# Each test module gets its own control namespace, so workflow ids like billing-run/<period> never collide across
# modules sharing the session's Temporal server. They are registered when the server starts: a namespace
# registered later is not served by every service until their caches refresh.
CONTROL_NAMESPACES = tuple(f"tcloudsys{i:02d}" for i in range(80))
_next_control_namespace = iter(CONTROL_NAMESPACES)
OPERATOR_TOKEN = "test-operator-token-" + secrets.token_hex(8)
WORKER_METRICS_PORT = procs.free_port()


@pytest.fixture(scope="session")
def platform_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("platform")


@pytest.fixture(scope="session")
def postgres(platform_root: Path) -> Iterator[harness.Postgres]:
    pg = harness.Postgres(platform_root / "pg")
    pg.start()
    yield pg
    pg.stop()


@dataclass(frozen=True)
class JwtKeys:
    """The session's data-plane signing key and the JWKS file every Temporal server of the session trusts."""

    key_file: Path
    jwks_uri: str


@pytest.fixture(scope="session")
def jwt_keys(platform_root: Path) -> JwtKeys:
    key_settings = Settings(state_dir=platform_root)
    jwks_file = platform_root / "jwks.json"
    jwks_file.write_text(json.dumps(jwt.jwks(key_settings)))
    return JwtKeys(jwt.key_path(key_settings), jwks_file.as_uri())


@pytest.fixture(scope="session")
def temporal_factory(postgres: harness.Postgres, jwt_keys: JwtKeys) -> TemporalFactory:
    """Makes (does not start) more Temporal servers on the session's PostgreSQL, trusting the session's key."""

    def make(root: Path, namespaces: tuple[str, ...] = (), *, with_ui: bool = False) -> harness.TemporalServer:
        return harness.TemporalServer(root, server_dsn=postgres.server_dsn, jwks_uri=jwt_keys.jwks_uri,
                                      namespaces=namespaces, with_ui=with_ui)

    return make


@pytest.fixture(scope="session")
def temporal_server(platform_root: Path, temporal_factory: TemporalFactory) -> Iterator[harness.TemporalServer]:
    server = temporal_factory(platform_root / "temporal", CONTROL_NAMESPACES, with_ui=True)
    server.start()
    yield server
    server.stop_all()


@pytest.fixture(scope="session")
def localstripe(platform_root: Path) -> Iterator[harness.LocalStripe]:
    root = platform_root / "localstripe"
    root.mkdir()
    fake = harness.LocalStripe(root)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def prometheus(platform_root: Path, temporal_server: harness.TemporalServer) -> Iterator[harness.Prometheus]:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run ./deploy.sh local, which installs Debian's prometheus")
    root = platform_root / "prometheus"
    root.mkdir()
    prom = harness.Prometheus(root, {
        "temporal": [f"127.0.0.1:{temporal_server.ports.metrics}"],
        "tcloud-worker": [f"127.0.0.1:{WORKER_METRICS_PORT}"],
    })
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    """One SDK runtime for the session; its metrics are scraped as the worker's."""
    bind = f"127.0.0.1:{WORKER_METRICS_PORT}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))


def _database_name(module: str) -> str:
    return "t_" + re.sub(r"[^a-z0-9]", "_", module.lower())[-40:] + "_" + secrets.token_hex(3)


@pytest_asyncio.fixture(scope="module")
async def database_dsn(request: pytest.FixtureRequest, postgres: harness.Postgres) -> AsyncIterator[str]:
    """A clean, migrated database for each test module."""
    name = _database_name(request.module.__name__)
    conn = await asyncpg.connect(postgres.server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield postgres.dsn(name)
    conn = await asyncpg.connect(postgres.server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def settings(request: pytest.FixtureRequest, database_dsn: str, temporal_server: harness.TemporalServer,
             localstripe: harness.LocalStripe, jwt_keys: JwtKeys, tmp_path_factory: pytest.TempPathFactory
             ) -> Settings:
    """Settings pointing at this session's real parts and this module's database."""
    prometheus_url = request.getfixturevalue("prometheus").url
    state = tmp_path_factory.mktemp("state")
    control_namespace = next(_next_control_namespace, None)
    if control_namespace is None:
        raise RuntimeError("more test modules than CONTROL_NAMESPACES: raise its size in tests/conftest.py")
    return Settings(
        state_dir=state,
        temporal_address=temporal_server.address,
        temporal_public_address=temporal_server.public_address,
        temporal_ui_url=temporal_server.ui_url,
        jwt_private_key_file=jwt_keys.key_file,
        control_namespace=control_namespace,
        task_queue="tcloud-test-" + secrets.token_hex(3),
        postgres_dsn=SecretStr(database_dsn),
        prometheus_url=prometheus_url,
        stripe_api_base=localstripe.url,
        operator_token=SecretStr(OPERATOR_TOKEN),
        backup_dir=state / "backups",
        worker_metrics_port=WORKER_METRICS_PORT,
        schedules_enabled=False,  # a test that wants them builds settings with its own schedule_prefix
    )


@pytest_asyncio.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(settings.postgres_dsn.get_secret_value())
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="module")
async def temporal_client(settings: Settings) -> Client:
    """A client on this module's control namespace."""
    return await connect(settings)


@pytest_asyncio.fixture(scope="module")
async def worker(settings: Settings, runtime: Runtime) -> AsyncIterator[None]:
    """The real control-plane worker, in this process, on this module's task queue and database."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, runtime=runtime))
    # Ready once its schema is migrated and it polls; a failing start surfaces here.
    client = await connect(settings)
    for _ in range(200):
        if task.done():
            task.result()
        info = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=settings.control_namespace,
                                     task_queue=TaskQueue(name=settings.task_queue))
        )
        if info.pollers:
            break
        await asyncio.sleep(0.1)
    yield
    stop.set()
    await task
    if os.environ.get("TCLOUD_RECORD_HISTORIES"):
        await asyncio.to_thread(_write_histories, Path(os.environ["TCLOUD_RECORD_HISTORIES"]),
                                await _closed_histories(client))


async def _closed_histories(client: Client) -> dict[str, str]:
    """The module's closed workflows' histories as JSON, by a file name (to replay after a change of the code)."""
    out = {}
    async for execution in client.list_workflows("ExecutionStatus != 'Running'"):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        out[re.sub(r"[^A-Za-z0-9_.-]", "_", f"{execution.workflow_type}-{execution.id}")[:150]] = history.to_json()
    return out


def _write_histories(into: Path, histories: dict[str, str]) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for name, text in histories.items():
        (into / f"{name}.json").write_text(text)


@pytest_asyncio.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[TestClient]:
    """The API application over a real socket, with the real Temporal client and pool."""
    async with harness.api_client(settings) as client:
        yield client


@pytest.fixture(scope="module")
def operator_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest_asyncio.fixture(scope="session")
async def stripe_api(localstripe: harness.LocalStripe) -> AsyncIterator[stripe.StripeClient]:
    async with aiohttp.ClientSession() as session:
        yield stripe_client(Settings(stripe_api_base=localstripe.url), session)


@pytest_asyncio.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server per test (it starts in well under a second)."""
    path = shutil.which("temporal-test-server") or str(procs.BIN_DIR / "temporal-test-server")
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=path,
                                                        data_converter=DATA_CONVERTER)
    yield env
    await env.shutdown()
