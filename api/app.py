"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from api import cloud_grpc, metrics, pipeline_metrics
from api.appkeys import POOL, SETTINGS, STRIPE, TEMPORAL
from api.errors import error_middleware
from api.routes import (
    accounts,
    apikeys,
    backups,
    billing,
    billing_reports,
    console,
    health,
    identities,
    namespaces,
    oidc,
    payment_methods,
    portal,
    regions,
    spend_alerts,
    usage,
    webhooks,
)
from tcloud.platform.clients import stripe_client
from tcloud.platform.db import create_pool
from tcloud.platform.temporal import connect
from tcloud.settings import Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings, *, cloud_api: bool = False) -> web.Application:
    """The API application; with ``cloud_api`` it also serves the Cloud Ops API over gRPC on
    ``settings.cloud_api_port`` (api/cloud_grpc.py) while it runs."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_temporal)
    app.cleanup_ctx.append(_postgres)
    app.cleanup_ctx.append(_stripe)
    metrics.install(app)
    pipeline_metrics.install(app, interval_seconds=settings.pipeline_metrics_interval_seconds)
    for module in (health, accounts, apikeys, namespaces, regions, usage, billing, spend_alerts, payment_methods,
                   webhooks, backups, console, portal, oidc, identities, billing_reports):
        app.add_routes(module.routes)
    if cloud_api:
        app.cleanup_ctx.append(cloud_grpc.serving)  # last: it stops first, while the pool and Temporal still work
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
