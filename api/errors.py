"""One middleware turning every failure into JSON ``{"message": ..., "code": ...}`` with the right status."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from pydantic import ValidationError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger("tcloud.api")


class ApiError(Exception):
    """A failure the caller caused or must know about; ``status`` is the HTTP status.

    ``exists`` marks a 409 that says the resource (or the operation id) already exists, which the gRPC door
    answers with ALREADY_EXISTS; any other 409 (a stale resource version, a resource in the wrong state) is
    FAILED_PRECONDITION there (api/cloud_grpc.py).
    """

    def __init__(self, status: int, message: str, *, details: object = None,
                 headers: dict[str, str] | None = None, exists: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}  # e.g. Retry-After on a 429
        self.exists = exists


def json_error(status: int, message: str, details: object = None) -> web.Response:
    body: dict[str, object] = {"code": status, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status)


_RPC_STATUS = {
    RPCStatusCode.NOT_FOUND: 404,
    RPCStatusCode.ALREADY_EXISTS: 409,
    RPCStatusCode.INVALID_ARGUMENT: 400,
    RPCStatusCode.FAILED_PRECONDITION: 409,
    RPCStatusCode.PERMISSION_DENIED: 403,
    RPCStatusCode.RESOURCE_EXHAUSTED: 429,
    RPCStatusCode.UNAVAILABLE: 503,
    RPCStatusCode.DEADLINE_EXCEEDED: 504,
}


def translated(err: Exception) -> ApiError | None:
    """What the caller is told about a failure raised below the API (Postgres, Temporal), or None for a bug.

    Both doors use it: the JSON middleware below and the gRPC server (api/cloud_grpc.py).
    """
    if isinstance(err, ApiError):
        return err
    if isinstance(err, asyncpg.CharacterNotInRepertoireError):  # a NUL in a path or query parameter reached a query
        return ApiError(400, "the request carries a NUL character, which no name or id may contain")
    if isinstance(err, WorkflowAlreadyStartedError):
        return ApiError(409, "the operation is already running", exists=True)
    if isinstance(err, RPCError):
        status = _RPC_STATUS.get(err.status, 502)
        if status >= 500:
            log.warning("temporal error: %s", err)
            return ApiError(status, "the workflow service is unavailable, try again")
        return ApiError(status, err.message, exists=err.status == RPCStatusCode.ALREADY_EXISTS)
    return None


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        response = json_error(err.status, err.message, err.details)
        response.headers.update(err.headers)
        return response
    except ValidationError as err:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors(include_url=False)]
        return json_error(400, "request body is invalid", details)
    except json.JSONDecodeError:
        return json_error(400, "request body is not valid JSON")
    except (asyncpg.CharacterNotInRepertoireError, WorkflowAlreadyStartedError, RPCError) as err:
        known = translated(err)
        assert known is not None
        if known.status >= 500:
            log.warning("temporal error on %s %s", request.method, request.path)
        return json_error(known.status, known.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return json_error(err.status, err.reason if err.text is None or err.text.startswith(str(err.status))
                          else err.text)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error")
