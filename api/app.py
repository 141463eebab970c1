"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from api import metrics, pipeline_metrics
from api.appkeys import POOL, SETTINGS, STRIPE, TEMPORAL
from api.errors import error_middleware
from api.routes import (
    accounts,
    apikeys,
    backups,
    billing,
    console,
    health,
    namespaces,
    payment_methods,
    portal,
    spend_alerts,
    usage,
    webhooks,
)
from tcloud.platform.clients import stripe_client
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect
from tcloud.settings import Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_temporal)
    app.cleanup_ctx.append(_postgres)
    app.cleanup_ctx.append(_stripe)
    metrics.install(app)
    pipeline_metrics.install(app, interval_seconds=settings.pipeline_metrics_interval_seconds)
    for module in (health, accounts, apikeys, namespaces, usage, billing, spend_alerts, payment_methods, webhooks,
                   backups, console, portal):
        app.add_routes(module.routes)
    return app


async def _temporal(app: web.Application) -> AsyncIterator[None]:
    app[TEMPORAL] = await connect(app[SETTINGS])
    yield


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await create_pool(app[SETTINGS].postgres_dsn.get_secret_value())
    yield
    await app[POOL].close()


async def _stripe(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[STRIPE] = stripe_client(app[SETTINGS], session)
        yield
