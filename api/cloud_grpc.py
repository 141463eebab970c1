"""The Cloud Ops API over gRPC: ``temporal.api.cloud.cloudservice.v1.CloudService``, served by the API process.

What Temporal's own clients speak (the SDKs' ``CloudOperationsClient``, the Go Cloud SDK, the Terraform provider).
Every method goes through one dispatcher, in this order:

1. the caller's API key, from the metadata ``authorization: Bearer <api key>`` as Temporal Cloud takes it, checked
   by the same code as the JSON routes (``api.auth.customer_of_key``, with its failed-authentication throttle);
2. the optional ``temporal-cloud-api-version`` metadata, a date (``2024-10-01``) or a semantic version
   (``v0.3.0``), checked for its form only;
3. the method's function in ``api/cloud_service.py``, the one its JSON route calls too. A method this platform does
   not implement answers UNIMPLEMENTED, saying so; a request that is not its method's message (bad wire format, a
   string that is not UTF-8) or that carries a timestamp or duration outside protobuf's range answers
   INVALID_ARGUMENT (gRPC itself would answer UNKNOWN before the caller is known, the method INTERNAL).

Errors are the JSON door's, mapped to status codes (:func:`status_of`). The server also answers the standard
health service (``grpc.health.v1.Health``), and on shutdown reports NOT_SERVING, stops taking calls and lets
running ones finish for ``cloud_api_grace_seconds``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import unquote

import grpc
from aiohttp import web
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from temporalio.api.cloud.cloudservice.v1 import service_pb2

from api import cloud_service, cloud_usage
from api.appkeys import CLOUD_API, SETTINGS
from api.auth import bearer_of, customer_of_key
from api.cloud_service import Call
from api.errors import ApiError, translated
from api.throttle import caller_address

log = logging.getLogger("tcloud.cloud_api")

SERVICE = "temporal.api.cloud.cloudservice.v1.CloudService"
DESCRIPTOR = service_pb2.DESCRIPTOR.services_by_name["CloudService"]
VERSION_HEADER = "temporal-cloud-api-version"

Method = Callable[[Call, Any], Awaitable[Message]]

# The methods this platform implements; every other method of the service answers UNIMPLEMENTED.
METHODS: dict[str, Method] = {
    "CreateNamespace": cloud_service.create_namespace,
    "GetNamespaces": cloud_service.get_namespaces,
    "GetNamespace": cloud_service.get_namespace,
    "UpdateNamespace": cloud_service.update_namespace,
    "DeleteNamespace": cloud_service.delete_namespace,
    "UpdateNamespaceTags": cloud_service.update_namespace_tags,
    "RenameCustomSearchAttribute": cloud_service.rename_custom_search_attribute,
    "GetAsyncOperation": cloud_service.get_async_operation,
    "GetAccount": cloud_service.get_account,
    "GetRegions": cloud_service.get_regions,
    "GetRegion": cloud_service.get_region,
    "GetUsage": cloud_usage.get_usage,
    "CreateBillingReport": cloud_usage.create_billing_report,
    "GetBillingReport": cloud_usage.get_billing_report,
    "GetCurrentIdentity": cloud_service.get_current_identity,
    "GetApiKeys": cloud_service.get_api_keys,
    "GetApiKey": cloud_service.get_api_key,
    "CreateApiKey": cloud_service.create_api_key,
    "DeleteApiKey": cloud_service.delete_api_key,
    "UpdateApiKey": cloud_service.update_api_key,
    "CreateUser": cloud_service.create_user,
    "GetUser": cloud_service.get_user,
    "GetUsers": cloud_service.get_users,
    "UpdateUser": cloud_service.update_user,
    "DeleteUser": cloud_service.delete_user,
    "SetUserNamespaceAccess": cloud_service.set_user_namespace_access,
    "CreateServiceAccount": cloud_service.create_service_account,
    "GetServiceAccount": cloud_service.get_service_account,
    "GetServiceAccounts": cloud_service.get_service_accounts,
    "UpdateServiceAccount": cloud_service.update_service_account,
    "DeleteServiceAccount": cloud_service.delete_service_account,
    "SetServiceAccountNamespaceAccess": cloud_service.set_service_account_namespace_access,
}

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # a stale resource version, a resource in the wrong state
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.RESOURCE_EXHAUSTED,  # a quota of the plan (namespaces, API keys)
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

_SEMVER = re.compile(r"v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def status_of(err: ApiError) -> grpc.StatusCode:
    """The gRPC status code of an API error (the JSON door's HTTP status)."""
    if err.status == 409 and err.exists:
        return grpc.StatusCode.ALREADY_EXISTS
    return _CODES.get(err.status, grpc.StatusCode.INTERNAL)


def check_version(value: str | None) -> None:
    """Refuse a ``temporal-cloud-api-version`` that is neither a date nor a semantic version (absent is fine)."""
    if value is None:
        return
    if _SEMVER.fullmatch(value):
        return
    if _DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return
        except ValueError:
            pass
    raise ApiError(400, f"{VERSION_HEADER} {value!r} is neither a date (2024-10-01) nor a version (v0.3.0)")


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000``)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return unquote(rest).rsplit(":", 1)[0].strip("[]")
    return peer


def unsupported(method: str) -> ApiError:
    return ApiError(501, f"CloudService/{method} is not supported by this platform")


@dataclass(frozen=True)
class Undecodable:
    """What a request that is not its method's message (bad wire format, a string that is not UTF-8) decodes to:
    refused with INVALID_ARGUMENT once the caller is known, instead of gRPC's UNKNOWN before it."""

    type_name: str
    reason: str


def _decoder(request_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(raw: bytes) -> Message | Undecodable:
        try:
            return request_type.FromString(raw)
        except DecodeError as err:
            return Undecodable(request_type.DESCRIPTOR.name, str(err).rsplit(": ", 1)[-1])
    return decode


# What protobuf allows a Timestamp and a Duration (seconds, nanos): a value outside fails every conversion.
_TIME_BOUNDS = {"google.protobuf.Timestamp": ((-62135596800, 253402300799), (0, 999_999_999)),
                "google.protobuf.Duration": ((-315576000000, 315576000000), (-999_999_999, 999_999_999))}


def time_out_of_range(message: Message, prefix: str = "") -> str | None:
    """The path of the first Timestamp or Duration in ``message`` outside protobuf's range, or None.

    The JSON door cannot carry one (its parser refuses it); the binary wire can, and the methods' conversions to
    datetime would fail on it.
    """
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        path = prefix + field.json_name
        if field.message_type.GetOptions().map_entry:
            values = list(value.values()) if field.message_type.fields_by_name["value"].message_type else []
        else:
            values = list(value) if field.is_repeated else [value]
        for item in values:
            bounds = _TIME_BOUNDS.get(item.DESCRIPTOR.full_name)
            if bounds is None:
                found = time_out_of_range(item, path + ".")
                if found:
                    return found
            elif not (bounds[0][0] <= item.seconds <= bounds[0][1] and bounds[1][0] <= item.nanos <= bounds[1][1]):
                return path
    return None


class _Dispatcher:
    """Turns each CloudService call into the method's function of api/cloud_service.py for the authenticated caller."""

    def __init__(self, app: web.Application):
        self._app = app

    def handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for method in DESCRIPTOR.methods:
            request_type = message_factory.GetMessageClass(method.input_type)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                self._behavior(method.name), request_deserializer=_decoder(request_type),
                response_serializer=lambda answer: answer.SerializeToString())
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _behavior(self, name: str) -> Callable[[Message | Undecodable, grpc.aio.ServicerContext[Any, Any]],
                                               Awaitable[Message]]:
        implementation = METHODS.get(name)

        async def behavior(request: Message | Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            try:
                return await self._run(name, implementation, request, context)
            except Exception as err:
                known = translated(err)
                if known is None:
                    log.exception("unhandled error in CloudService/%s", name)
                    known = ApiError(500, "internal error")
            if known.headers:
                context.set_trailing_metadata(tuple((k.lower(), v) for k, v in known.headers.items()))
            await context.abort(status_of(known), known.message)
            raise AssertionError("abort returns only by raising")

        return behavior

    async def _run(self, name: str, implementation: Method | None, request: Message | Undecodable,
                   context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            metadata[key.lower()] = value if isinstance(value, str) else value.decode(errors="replace")
        settings = self._app[SETTINGS]
        client = caller_address(peer_address(context.peer() or ""), metadata.get("x-forwarded-for", ""),
                                settings.api_trusted_proxy_hops)
        customer = await customer_of_key(self._app, bearer_of(metadata.get("authorization", "")), client)
        check_version(metadata.get(VERSION_HEADER))
        if implementation is None:
            raise unsupported(name)
        if isinstance(request, Undecodable):
            raise ApiError(400, f"the request is not a valid {request.type_name} message ({request.reason})")
        out_of_range = time_out_of_range(request)
        if out_of_range:
            raise ApiError(400, f"{out_of_range} is outside the range of a protobuf timestamp or duration")
        return await implementation(Call.of(self._app, customer), request)


@dataclass
class CloudApiServer:
    """The running gRPC server: where it listens, and how it stops."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def stop(self, grace_seconds: float) -> None:
        """NOT_SERVING for the health service, no new calls, running calls finish within the grace period."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)


async def start(app: web.Application, host: str, port: int) -> CloudApiServer:
    """Serve CloudService and the health service for ``app`` (started: its pool and Temporal client are set).

    Raises:
        RuntimeError: when the address cannot be bound (e.g. the port is taken: no port sharing).
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_Dispatcher(app).handler(),))
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    for service in ("", SERVICE):
        await checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    return CloudApiServer(server, checks, bound)


async def serving(app: web.Application) -> AsyncIterator[None]:
    """The API application's cleanup context that runs the gRPC server beside the HTTP one (``app[CLOUD_API]``).

    Append it after the contexts that set the pool and the Temporal client: it stops first, while they still work.
    """
    settings = app[SETTINGS]
    if settings.cloud_api_port is None:
        yield
        return
    running = await start(app, settings.api_host, settings.cloud_api_port)
    app[CLOUD_API] = running
    log.info("Cloud Ops API (gRPC) on %s:%d", settings.api_host, running.port)
    try:
        yield
    finally:
        await running.stop(settings.cloud_api_grace_seconds)
