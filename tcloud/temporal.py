"""Connecting to Temporal the same way from the worker, the API, the CLI helpers and the tests."""

from __future__ import annotations

import asyncio

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from tcloud.settings import Settings

# Pydantic's converter carries Decimal, datetime and dataclasses exactly; client and worker must agree on it.
DATA_CONVERTER = pydantic_data_converter


async def connect(settings: Settings, *, namespace: str | None = None, runtime: Runtime | None = None) -> Client:
    """A client on the control namespace (or ``namespace``) with the platform's data converter."""
    return await Client.connect(
        settings.temporal_address,
        namespace=namespace or settings.control_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )


async def namespace_exists(client: Client, name: str) -> bool:
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=name))
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
            await client.workflow_service.register_namespace(
                RegisterNamespaceRequest(
                    namespace=name,
                    description=description,
                    owner_email=owner_email,
                    workflow_execution_retention_period=Duration(seconds=retention_days * 86400),
                    data=data or {},
                )
            )
            created = True
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while not await namespace_exists(client, name):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"namespace {name} not served after {wait_seconds}s")
        await asyncio.sleep(0.2)
    return created
