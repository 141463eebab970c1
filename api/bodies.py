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
    except RecursionError as err:
        raise ApiError(400, "request body is nested too deeply") from err
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    if not _storable(body):
        raise ApiError(400, "request body has a NUL character or an unpaired surrogate in a string")
    return body


def _storable(value: object) -> bool:
    """Whether every string in ``value`` is text PostgreSQL can store (UTF-8, no NUL)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate from a "\\ud800" escape
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


async def parse(request: web.Request, model: type[M]) -> M:
    """Validate the body against ``model`` (declare ``extra='forbid'`` on it to refuse unknown fields)."""
    return model.model_validate(await json_object(request))
