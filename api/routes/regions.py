"""Routes: this platform's one region (Cloud Ops paths and JSON; the methods are in api/cloud_service.py)."""

from __future__ import annotations

from aiohttp import web
from temporalio.api.cloud.cloudservice.v1 import GetRegionRequest, GetRegionsRequest

from api import cloud_service
from api.auth import require_customer
from api.cloud_json import message_response, proto_schema
from api.cloud_service import Call
from api.openapi import documented

routes = web.RouteTableDef()
TAGS = ("regions",)


@routes.get("/cloud/regions")
@documented("The regions namespaces can be placed in: this platform's one Temporal cluster", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetRegionsResponse"), tags=TAGS)
async def get_regions(request: web.Request) -> web.Response:
    call = Call.of(request.app, await require_customer(request))
    return message_response(await cloud_service.get_regions(call, GetRegionsRequest()))


@routes.get("/cloud/regions/{region}")
@documented("One region by its id (this platform's one region; any other id answers 404)", auth="customer",
            response=proto_schema("temporal.api.cloud.cloudservice.v1.GetRegionResponse"), tags=TAGS)
async def get_region(request: web.Request) -> web.Response:
    call = Call.of(request.app, await require_customer(request))
    return message_response(await cloud_service.get_region(call, GetRegionRequest(region=request.match_info["region"])))
