"""The API's own Prometheus metrics (a registry per app, so several apps can live in one test process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
REQUESTS = web.AppKey("metrics_requests", Counter)
LATENCY = web.AppKey("metrics_latency", Histogram)


def install(app: web.Application) -> None:
    registry = CollectorRegistry()
    app[REGISTRY] = registry
    app[REQUESTS] = Counter("tcloud_api_requests", "API requests by route and status",
                            ["method", "route", "status"], registry=registry)
    app[LATENCY] = Histogram("tcloud_api_request_seconds", "API request latency", ["route"], registry=registry)
    app.middlewares.append(_measure)
    app.router.add_get("/metrics", _metrics)


@web.middleware
async def _measure(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    start = time.perf_counter()
    response = await handler(request)
    info = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    request.app[REQUESTS].labels(request.method, info, str(response.status)).inc()
    request.app[LATENCY].labels(info).observe(time.perf_counter() - start)
    return response


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
