"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from api import openapi
from api.appkeys import POOL, TEMPORAL
from api.openapi import documented
from tcloud.store import platform as platform_store

routes = web.RouteTableDef()


@routes.get("/healthz")
@documented("The process is up", auth="none", tags=("health",))
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@documented("Temporal and Postgres are reachable", auth="none", tags=("health",))
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}

    async def temporal() -> None:
        await request.app[TEMPORAL].service_client.check_health(timeout=timedelta(seconds=2))

    async def postgres() -> None:
        await platform_store.ping(request.app[POOL], within_seconds=2)

    for name, probe in (("temporal", temporal), ("postgres", postgres)):
        try:
            await asyncio.wait_for(probe(), timeout=3)
            checks[name] = "ok"
        except Exception as err:  # any failure means not ready; say which
            checks[name] = f"unavailable: {type(err).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503)


@routes.get("/openapi.json")
@documented("This API's OpenAPI document", auth="none", tags=("health",))
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.build(request.app))
