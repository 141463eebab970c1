"""Reading request bodies strictly: JSON objects only, unknown fields refused."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from api.errors import ApiError

M = TypeVar("M", bound=BaseModel)


async def json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as application/json")
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "request body is not valid JSON") from err
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


async def parse(request: web.Request, model: type[M]) -> M:
    """Validate the body against ``model`` (declare ``extra='forbid'`` on it to refuse unknown fields)."""
    return model.model_validate(await json_object(request))
