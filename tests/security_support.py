"""Helpers of the reliability and security suite: a private Temporal server, identities, JSON-error checks.

Fuzzing and the authorization matrix start billing runs and backups whose workflow ids (``billing-run/<period>``,
``backup/<date>``) are global on a server; they run against a Temporal dev server of their own so they never
collide with other modules' workflows on the session's shared server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.runtime import Runtime

from launcher import procs
from tcloud.platform.temporal import connect
from tcloud.settings import Settings
from tests import harness
from workers.main import run_worker


@dataclass(frozen=True)
class Identity:
    """Who sends a request: its name in reports and its headers."""

    name: str
    headers: dict[str, str]


def private_temporal(make: Callable[..., harness.TemporalServer], root: Path,
                     control_namespace: str) -> Iterator[harness.TemporalServer]:
    """A Temporal server of one module's own (generator body of a module-scoped fixture); ``make`` is the
    ``temporal_factory`` fixture."""
    root.mkdir(parents=True, exist_ok=True)
    server = make(root, (control_namespace,))
    server.start()
    wait_namespace_served(server, control_namespace)
    try:
        yield server
    finally:
        server.stop()


def wait_namespace_served(server: harness.TemporalServer, namespace: str, timeout: float = 90) -> None:
    """Poll until the frontend answers for ``namespace``: its ports open before it is healthy, on a busy machine
    by seconds."""
    def served() -> bool:
        result = subprocess.run([procs.binary("temporal"), "operator", "namespace", "describe", "--namespace",
                                 namespace, "--address", server.address], capture_output=True, timeout=30,
                                check=False)
        return result.returncode == 0

    harness.wait_for(served, timeout=timeout, interval=0.5, what=f"namespace {namespace} served by {server.address}")


def on_server(settings: Settings, server: harness.TemporalServer, **update: object) -> Settings:
    """``settings`` pointed at ``server``, with further field updates."""
    return settings.model_copy(update={"temporal_address": server.address, **update})


def json_error_problem(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an error answer (None if nothing): it must be a 4xx in JSON with a message."""
    if status >= 500:
        return f"server error {status}: {body[:200]!r}"
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"{status} answered as {content_type or 'no content type'}: {body[:200]!r}"
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"{status} body is not JSON: {body[:200]!r}"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("message"), str) or not parsed["message"]:
        return f"{status} JSON without a message: {body[:200]!r}"
    if parsed.get("code") != status:
        return f"{status} JSON with code {parsed.get('code')!r}"
    return None


@asynccontextmanager
async def running_worker(settings: Settings, runtime: Runtime) -> AsyncIterator[None]:
    """The real control-plane worker in this process, on ``settings``' server and task queue, until exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, runtime=runtime))
    client = await connect(settings)
    request = DescribeTaskQueueRequest(namespace=settings.control_namespace,
                                       task_queue=TaskQueue(name=settings.task_queue))
    for _ in range(600):
        if task.done():
            task.result()
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the worker never polled its task queue")
    try:
        yield
    finally:
        stop.set()
        await task
