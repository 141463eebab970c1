"""The customers' Temporal UI reaches the public frontend through this gRPC gateway (``tcloud-ui-gateway``).

Why it exists: the UI (ui-server v2.55.0, its built-in Svelte app) loads two cluster-wide calls on every page,
``ListNamespaces`` (the namespace picker and list) and ``GetClusterInfo`` (server version and visibility store).
Temporal's default authorizer gives both to system roles only (``common/api/metadata.go``: ``ScopeCluster``), so a
tenant's token gets PermissionDenied, and the UI answers a 403 on ``GetClusterInfo`` by sending the user back to the
login page: with the official server and UI a tenant cannot use the UI at all. The claim mapper has no role that
lists namespaces without also reading every namespace (``temporal-system:read``), the server has no setting that
filters ``ListNamespaces`` by the caller's claims, and the UI server has none that skips the two calls (only its
"cloud" build, which the module does not ship, does).

So the UI server talks gRPC to this gateway, which passes every call through to the public frontend unchanged, with
the caller's own metadata (its token), so the server authorizes each one; only two calls are answered here:

- ``ListNamespaces``: the namespaces named in the caller's verified token (``permissions``), each described by the
  public frontend *with the caller's token*: the server decides what the caller may see, and a namespace it refuses
  is left out. Nothing else is listed, so a customer sees only their own namespaces.
- ``GetClusterInfo``: for a caller whose token verifies (our signature, issuer, not expired), the cluster's answer
  read through the internal frontend (server version, visibility store: nothing about any tenant); any other caller
  gets what the public frontend says (PermissionDenied).

One more thing is changed on the way back: the UI takes any HTTP 403 for an expired sign-in and sends the customer
to log in again (``handle-error.ts``, for every call made with its default error handling), so the server's refusal
of another customer's namespace would never be seen and the UI would loop through the sign-in. The gateway passes a
PermissionDenied on as FAILED_PRECONDITION (HTTP 400 from the UI server) with the server's own message after
``PermissionDenied: ``, which the UI shows where it prints an answer's message ("PermissionDenied: Request
unauthorized." on the workflow list). Two calls keep the server's PermissionDenied (HTTP 403) as it is, because the
UI makes them without that handling and shows the refusal itself: its start-page probe (:func:`is_namespace_probe`),
whose 403 the UI answers with the namespace picker, and ``DescribeWorkflowExecution``, which loads a workflow's page
(``fetchWorkflow``, ``notifyOnError: false``): the page then shows the server's status, "403 ... Forbidden", rather
than "400 Bad Request". That page prints only the HTTP status and its reason phrase, never the answer's message
(``workflow-error.svelte``, the same in every UI release up to v2.58.1), so the server's words ("Request
unauthorized.") are in the answer's body but not on the page.

It runs beside the customers' UI server (locally a process of ``deploy.sh local``, on Kubernetes a sidecar of the
UI's pod), listening on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from google.protobuf.message import DecodeError
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeNamespaceResponse,
    ListNamespacesResponse,
    ListWorkflowExecutionsRequest,
)

from api.auth import bearer_of
from tcloud.settings import Settings

log = logging.getLogger("tcloud.ui_gateway")

WORKFLOW_SERVICE = "/temporal.api.workflowservice.v1.WorkflowService/"
LIST_NAMESPACES = WORKFLOW_SERVICE + "ListNamespaces"
GET_CLUSTER_INFO = WORKFLOW_SERVICE + "GetClusterInfo"
DESCRIBE_NAMESPACE = WORKFLOW_SERVICE + "DescribeNamespace"

LIST_WORKFLOW_EXECUTIONS = WORKFLOW_SERVICE + "ListWorkflowExecutions"
DESCRIBE_WORKFLOW_EXECUTION = WORKFLOW_SERVICE + "DescribeWorkflowExecution"
# Calls whose PermissionDenied reaches the UI as it is (HTTP 403): the UI makes them without its "403: signed out"
# handling and shows the refusal on the page (see the module doc). The start-page probe is recognised by its request
# (:func:`is_namespace_probe`).
PERMISSION_DENIED_AS_IS = frozenset({DESCRIBE_WORKFLOW_EXECUTION})
# How the server's PermissionDenied reaches the UI (see the module doc): FAILED_PRECONDITION, which the UI server
# answers with HTTP 400, and the server's message after this prefix.
SHOWN_PERMISSION_DENIED = grpc.StatusCode.FAILED_PRECONDITION
PERMISSION_DENIED_PREFIX = "PermissionDenied: "

# Metadata that belongs to one hop (gRPC sets it again on the next call) rather than to the caller.
_HOP_METADATA = {"user-agent", "content-type", "te", "host", "grpc-accept-encoding", "grpc-encoding",
                 "grpc-timeout", "accept-encoding", "content-length"}
DEFAULT_TIMEOUT_SECONDS = 30.0


def _identity(value: bytes) -> bytes:
    return value


class TokenVerifier:
    """Checks a bearer token the way the UI server does for its provider: our RS256 signature (keys from the JWKS
    URL, refetched when an unknown ``kid`` appears), our issuer, not expired."""

    def __init__(self, jwks_url: str, issuer: str):
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)
        self._issuer = issuer

    async def claims(self, token: str) -> dict[str, Any] | None:
        """The token's claims, or None when it does not verify."""
        try:
            key = await asyncio.to_thread(self._keys.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], issuer=self._issuer,
                                                options={"verify_aud": False, "require": ["exp", "sub"]})
        except (jwt.PyJWTError, OSError) as err:
            log.info("ui gateway: token refused: %s", err)
            return None
        return claims


def permitted_namespaces(claims: dict[str, Any]) -> list[str]:
    """The namespaces a token's ``permissions`` claim names (``<namespace>:<role>``), in order, once each; the
    system scope (``temporal-system``) is never listed."""
    names: list[str] = []
    for permission in claims.get("permissions") or []:
        if not isinstance(permission, str) or ":" not in permission:
            continue
        namespace = permission.split(":", 1)[0]
        if namespace and namespace != "temporal-system" and namespace not in names:
            names.append(namespace)
    return names


def keeps_permission_denied(method: str, request: bytes) -> bool:
    """Whether the server's PermissionDenied on this call goes back as it is (HTTP 403 from the UI server) rather than
    as FAILED_PRECONDITION (HTTP 400), which the UI would otherwise take for a lapsed sign-in."""
    return method in PERMISSION_DENIED_AS_IS or is_namespace_probe(method, request)


def is_namespace_probe(method: str, request: bytes) -> bool:
    """Whether a call is the UI's question "may I open this namespace?": its start page lists one workflow of the
    default (or last used) namespace without a query, and sends the customer to the namespace picker on a 403."""
    if method != LIST_WORKFLOW_EXECUTIONS:
        return False
    try:
        listing = ListWorkflowExecutionsRequest.FromString(request)
    except DecodeError:
        return False
    return listing.page_size == 1 and not listing.query and not listing.next_page_token


def forwarded_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> list[tuple[str, str | bytes]]:
    """The caller's metadata to send upstream: its token and headers, without the ones that belong to one hop."""
    return [(key, value) for key, value in (metadata or ())
            if not key.startswith(":") and key.lower() not in _HOP_METADATA]


@dataclass
class UiGateway:
    """Passes calls to ``upstream`` (the public frontend) and answers the two cluster-wide ones (module doc)."""

    upstream: grpc.aio.Channel
    internal: grpc.aio.Channel
    verifier: TokenVerifier

    def handler(self) -> grpc.GenericRpcHandler:
        gateway = self

        class _Handler(grpc.GenericRpcHandler):
            def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                method = handler_call_details.method  # type: ignore[attr-defined]
                behaviour: Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
                if method == LIST_NAMESPACES:
                    behaviour = gateway.list_namespaces
                elif method == GET_CLUSTER_INFO:
                    behaviour = gateway.get_cluster_info
                else:
                    async def behaviour(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                        return await gateway.forward(method, request, context)
                return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=_identity,
                                                           response_serializer=_identity)

        return _Handler()

    async def forward(self, method: str, request: bytes, context: grpc.aio.ServicerContext,
                      channel: grpc.aio.Channel | None = None, metadata: list[tuple[str, str | bytes]] | None = None
                      ) -> bytes:
        """The upstream's answer to the same call with the caller's metadata; its error, code and details (the
        server's own words), when it refuses."""
        call = (channel or self.upstream).unary_unary(method, request_serializer=_identity,
                                                      response_deserializer=_identity)
        if metadata is None:
            metadata = forwarded_metadata(context.invocation_metadata())  # type: ignore[arg-type]
        remaining = context.time_remaining()
        try:
            answer: bytes = await call(request, metadata=metadata or None,
                                       timeout=remaining if remaining is not None else DEFAULT_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED and not keeps_permission_denied(method, request):
                # Shown as an error rather than taken for an expired sign-in (module doc); the server's words kept.
                await context.abort(SHOWN_PERMISSION_DENIED, f"{PERMISSION_DENIED_PREFIX}{err.details() or ''}")
            await context.abort(err.code(), err.details() or "", tuple(err.trailing_metadata() or ()))
            raise  # abort raises; this keeps type checkers content
        return answer

    async def _verified(self, context: grpc.aio.ServicerContext) -> dict[str, Any] | None:
        metadata = dict(forwarded_metadata(context.invocation_metadata()))  # type: ignore[arg-type]
        auth = metadata.get("authorization")
        token = bearer_of(auth if isinstance(auth, str) else "")
        return await self.verifier.claims(token) if token else None

    async def list_namespaces(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        claims = await self._verified(context)
        if claims is None:
            return await self.forward(LIST_NAMESPACES, request, context)
        metadata = forwarded_metadata(context.invocation_metadata())  # type: ignore[arg-type]
        describe = self.upstream.unary_unary(DESCRIBE_NAMESPACE,
                                             request_serializer=DescribeNamespaceRequest.SerializeToString,
                                             response_deserializer=DescribeNamespaceResponse.FromString)

        async def described(namespace: str) -> DescribeNamespaceResponse | None:
            try:
                answer: DescribeNamespaceResponse = await describe(DescribeNamespaceRequest(namespace=namespace),
                                                                   metadata=metadata, timeout=10)
                return answer
            except grpc.aio.AioRpcError as err:
                # Refused (PermissionDenied) or gone (NotFound): not the caller's to see.
                log.info("ui gateway: %s left out of %s's list: %s", namespace, claims.get("sub"), err.code())
                return None

        found = await asyncio.gather(*(described(ns) for ns in permitted_namespaces(claims)))
        return ListNamespacesResponse(namespaces=[d for d in found if d is not None]).SerializeToString()

    async def get_cluster_info(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if await self._verified(context) is None:
            return await self.forward(GET_CLUSTER_INFO, request, context)
        return await self.forward(GET_CLUSTER_INFO, request, context, channel=self.internal, metadata=[])


def jwks_url(settings: Settings) -> str:
    return settings.ui_gateway_jwks_url or f"{settings.oidc_issuer.rstrip('/')}/.well-known/jwks.json"


@asynccontextmanager
async def serving(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None) -> AsyncIterator[int]:
    """Run the gateway while the block runs; yields the port it listens on (``port`` 0: any free one)."""
    upstream = grpc.aio.insecure_channel(settings.ui_gateway_upstream or settings.temporal_public_address)
    internal = grpc.aio.insecure_channel(settings.temporal_address)
    gateway = UiGateway(upstream, internal, TokenVerifier(jwks_url(settings), settings.oidc_issuer))
    server = grpc.aio.server(handlers=[gateway.handler()])
    bound = server.add_insecure_port(f"{host}:{settings.ui_gateway_port if port is None else port}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(grace=2)
        await upstream.close()
        await internal.close()


async def _run(settings: Settings) -> None:
    async with serving(settings, host=settings.ui_gateway_host) as port:
        log.info("ui gateway on %s:%d, upstream %s", settings.ui_gateway_host, port,
                 settings.ui_gateway_upstream or settings.temporal_public_address)
        await asyncio.Event().wait()


def main() -> None:
    """Entry point ``tcloud-ui-gateway``."""
    from tcloud.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_run(get_settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
