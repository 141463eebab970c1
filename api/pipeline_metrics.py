"""Billing-pipeline health on the API's ``/metrics``, read from Postgres in the background.

Two gauges feed the Grafana dashboard ``charts/tcloud/dashboards/tcloud-billing-pipeline.json``:

- ``tcloud_usage_collected_until_timestamp_seconds{collector}``: every hour before it is collected
  (``usage_watermarks.collected_through``); the dashboard's collection lag is ``time()`` minus it.
- ``tcloud_invoices{status}``: how many invoices are in each status.

Every API replica exports the same values (the dashboard takes ``max``); a table that does not exist yet (its
capability's migration has not been applied) leaves its gauge empty instead of failing the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from prometheus_client import Gauge

from api import metrics
from api.appkeys import POOL
from tcloud.store import invoices as invoice_store
from tcloud.store import platform as platform_store

log = logging.getLogger(__name__)

INVOICE_STATUSES = ("draft", "zero", "open", "paid", "past_due", "written_off")


@dataclass(frozen=True)
class PipelineGauges:
    """The gauges one application exports."""

    collected_until: Gauge
    invoices: Gauge


GAUGES = web.AppKey("pipeline_gauges", PipelineGauges)


def install(app: web.Application, *, interval_seconds: float = 30.0) -> None:
    """Register the gauges on the app's metrics registry and refresh them every ``interval_seconds``.

    Call after ``api.metrics.install(app)`` and after the Postgres pool's cleanup context is appended.

    Args:
        app: The application built by ``api.app.create_app``.
        interval_seconds: Time between two refreshes.
    """
    registry = app[metrics.REGISTRY]
    app[GAUGES] = PipelineGauges(
        collected_until=Gauge("tcloud_usage_collected_until_timestamp_seconds",
                              "Every hour before this time is collected, per usage collector",
                              ["collector"], registry=registry),
        invoices=Gauge("tcloud_invoices", "Invoices by status", ["status"], registry=registry),
    )

    async def refresher(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_refresh_forever(app, interval_seconds))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(refresher)


async def _refresh_forever(app: web.Application, interval_seconds: float) -> None:
    while True:
        try:
            await refresh(app[POOL], app[GAUGES])
        except (OSError, asyncpg.PostgresError) as err:  # Postgres away: keep the last values, try again
            log.warning("pipeline metrics not refreshed: %s", err)
        await asyncio.sleep(interval_seconds)


async def refresh(pool: asyncpg.Pool, gauges: PipelineGauges) -> None:
    """Read the collection watermarks and the invoice counts once and set the gauges.

    Args:
        pool: The platform's Postgres pool.
        gauges: The gauges to set.
    """
    try:
        rows = await platform_store.collection_watermarks(pool)
    except asyncpg.UndefinedTableError:
        rows = []
    for row in rows:
        gauges.collected_until.labels(row["collector"]).set(row["collected_through"].timestamp())

    try:
        counts = await invoice_store.invoice_counts_by_status(pool)
    except asyncpg.UndefinedTableError:
        return
    for status in INVOICE_STATUSES:
        gauges.invoices.labels(status).set(counts.get(status, 0))
