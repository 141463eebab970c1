"""The customer portal (``/``) and the operator console (``/console``): static pages over the JSON API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api.errors import ApiError
from api.openapi import documented

STATIC = Path(__file__).resolve().parent.parent / "static"
# Third-party front-end files come from `npm ci` at set-up time; they are never committed.
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
VENDOR = {"chart.umd.min.js": NODE_MODULES / "chart.js" / "dist" / "chart.umd.min.js"}

routes = web.RouteTableDef()


@routes.get("/")
@documented("The customer portal (HTML)", auth="none", tags=("portal",), response={"type": "string"})
async def portal(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


@routes.get("/console")
@documented("The operator console (HTML)", auth="none", tags=("portal",), response={"type": "string"})
async def console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "console.html")


@routes.get("/vendor/{name}")
@documented("Front-end libraries installed by npm ci", auth="none", tags=("portal",), response={"type": "string"})
async def vendor(request: web.Request) -> web.FileResponse:
    path = VENDOR.get(request.match_info["name"])
    if path is None:
        raise ApiError(404, "no such file")
    if not path.exists():
        raise ApiError(503, "front-end packages are not installed: run `npm ci` (deploy.sh local does)")
    return web.FileResponse(path)


routes.static("/static", STATIC)
