"""Entry point of the control-plane worker (``tcloud-worker``)."""

from __future__ import annotations

import asyncio
import logging
import signal

import aiohttp
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from tcloud.platform.clients import prometheus_client, stripe_client
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect, ensure_namespace, ensure_search_attributes
from tcloud.settings import Settings, get_settings
from workers import registry

log = logging.getLogger("tcloud.worker")


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None,
                     runtime: Runtime | None = None) -> None:
    """Connect, prepare the control namespace, schema and schedules, then poll until ``stop`` is set."""
    if runtime is None:
        bind = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))
    client = await connect(settings, runtime=runtime)
    await ensure_namespace(client, settings.control_namespace, retention_days=30,
                           description="tcloud control plane (never billed)")
    await ensure_search_attributes(client, settings.control_namespace)
    pool = await create_pool(settings.postgres_dsn.get_secret_value())
    session = aiohttp.ClientSession()
    try:
        clients = registry.Clients(settings=settings, pool=pool, temporal=client,
                                   stripe=stripe_client(settings, session), prometheus=prometheus_client(settings))
        await registry.ensure_schedules(clients)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=registry.workflows(),
            activities=registry.activities(clients),
            max_concurrent_activities=100,
        )
        log.info("worker polling %s on %s", settings.task_queue, settings.control_namespace)
        async with worker:
            await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        await session.close()
        await pool.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = asyncio.Event()

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(get_settings(), stop=stop)

    asyncio.run(_run())


if __name__ == "__main__":
    main()
