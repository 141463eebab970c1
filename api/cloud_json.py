"""Cloud Ops API JSON: protobuf messages of ``temporalio.api.cloud`` read and written with protobuf's JSON mapping."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from google.protobuf.json_format import MessageToDict, Parse, ParseError
from google.protobuf.message import Message

from api.bodies import json_object
from api.cloud_service import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from api.errors import ApiError

M = TypeVar("M", bound=Message)


async def parse_message(request: web.Request, message_type: type[M]) -> M:
    """The request body as ``message_type``; unknown fields and wrong types answer 400 with the parser's reason."""
    await json_object(request)  # content type, JSON syntax and "is an object", with the API's usual messages
    try:
        return Parse(await request.text(), message_type(), ignore_unknown_fields=False)
    except ParseError as err:
        raise ApiError(400, f"request body is invalid: {err}") from err


async def parse_message_at(request: web.Request, message_type: type[M], **from_path: str) -> M:
    """The body as ``message_type`` with the path's fields set (a body that names another one answers 400)."""
    body = await parse_message(request, message_type)
    for field, value in from_path.items():
        if getattr(body, field) and getattr(body, field) != value:
            raise ApiError(400, f"{field} in the body differs from the path")
        setattr(body, field, value)
    return body


def query_page_size(request: web.Request) -> int:
    """A listing's ``pageSize`` query parameter, checked before it reaches a message (whose int32 would overflow)."""
    try:
        size = int(request.query.get("pageSize") or PAGE_SIZE_DEFAULT)
    except ValueError as err:
        raise ApiError(400, "pageSize must be an integer") from err
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ApiError(400, f"pageSize must be between 1 and {PAGE_SIZE_MAX}")
    return size


def message_response(message: Message, *, status: int = 200) -> web.Response:
    """``message`` in protobuf's JSON mapping (camelCase names, enums as names, Timestamps as RFC 3339)."""
    return web.json_response(MessageToDict(message), status=status)


def proto_schema(full_name: str) -> dict[str, object]:
    """An OpenAPI schema that names the Cloud Ops message a body or answer carries."""
    return {"type": "object", "description": f"{full_name} in protobuf's JSON mapping (Temporal Cloud Ops API)",
            "externalDocs": {"url": "https://github.com/temporalio/api-cloud"}}
