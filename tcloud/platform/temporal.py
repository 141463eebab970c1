"""Connecting to Temporal the same way from the worker, the API, the CLI helpers and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from tcloud.settings import Settings

# Pydantic's converter carries Decimal, datetime and dataclasses exactly; client and worker must agree on it.
T = TypeVar("T")

DATA_CONVERTER = pydantic_data_converter

# The search attributes the platform's workflows set (the billing workflows), registered on the control namespace.
SEARCH_ATTRIBUTES: dict[str, IndexedValueType.ValueType] = {
    "TcloudAccount": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "TcloudPeriod": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "TcloudStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    # Every account a billing batch invoices: `TcloudAccounts = 'acme' AND TcloudPeriod = '2026-11'` finds it.
    "TcloudAccounts": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


async def connect(settings: Settings, *, namespace: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client on the control namespace (or ``namespace``) with the platform's data converter."""
    return await Client.connect(
        settings.temporal_address,
        namespace=namespace or settings.control_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )


async def namespace_exists(client: Client, name: str) -> bool:
    return await _found(client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=name)))


async def _found(call: Awaitable[object]) -> bool:
    """False when ``call`` answers NOT_FOUND, True when it answers at all."""
    try:
        await call
        return True
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def ensure_namespace(client: Client, name: str, *, retention_days: int = 30, description: str = "",
                           owner_email: str = "", data: dict[str, str] | None = None,
                           wait_seconds: float = 30.0) -> bool:
    """Register ``name`` unless it exists, then wait until the frontend serves it.

    Returns:
        Whether this call registered it.
    """
    created = False
    if not await namespace_exists(client, name):
        try:
            # RegisterNamespace has its own small rate limit (frontend.rps.namespaceReplicationInducingAPIs, 20/s).
            await _retry_exhausted(lambda: client.workflow_service.register_namespace(
                RegisterNamespaceRequest(
                    namespace=name,
                    description=description,
                    owner_email=owner_email,
                    workflow_execution_retention_period=Duration(seconds=retention_days * 86400),
                    data=data or {},
                )
            ), wait_seconds)
            created = True
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    await _wait_for(lambda: namespace_served(client, name), wait_seconds, f"namespace {name} served")
    return created


async def _wait_for(condition: Callable[[], Awaitable[bool]], wait_seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds, or raise TimeoutError after ``wait_seconds``."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: not after {wait_seconds}s")
        await asyncio.sleep(0.2)


async def _retry_exhausted(call: Callable[[], Awaitable[T]], wait_seconds: float) -> T:
    """``call()``, again after a pause while the server is rate limiting it (RESOURCE_EXHAUSTED; UNAVAILABLE when
    AddSearchAttributes hits the namespace-update limit underneath)."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            return await call()
        except RPCError as err:
            limited = err.status in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
            if not limited or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.25)


async def namespace_served(client: Client, name: str) -> bool:
    """Whether the frontend's namespace cache knows ``name`` (DescribeNamespace reads the database instead, so it
    answers before a freshly registered namespace can be used)."""
    return await _found(client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=name)))


async def ensure_search_attributes(client: Client, namespace: str,
                                   attributes: dict[str, IndexedValueType.ValueType] | None = None,
                                   *, wait_seconds: float = 30.0) -> list[str]:
    """Register the custom search attributes ``namespace`` lacks (SQL visibility keeps them per namespace).

    Returns:
        The names this call added.
    """
    wanted = SEARCH_ATTRIBUTES if attributes is None else attributes
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {name: kind for name, kind in wanted.items() if name not in listed.custom_attributes}
    if missing:
        try:
            await _retry_exhausted(lambda: client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)), wait_seconds)
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    async def all_listed() -> bool:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace))
        return all(name in listed.custom_attributes for name in missing)

    if missing:
        await _wait_for(all_listed, wait_seconds, f"search attributes {sorted(missing)} listed on {namespace}")
    return sorted(missing)
