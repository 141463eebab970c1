"""Namespace activities: register, change and delete tenant namespaces on the Temporal server, and their rows.

Every activity is safe to run twice: the server calls check what is already there, the SQL only moves a row
forward from the state it expects.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from google.protobuf.duration_pb2 import Duration
from temporalio import activity
from temporalio.api.enums.v1 import NamespaceState
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeNamespaceResponse,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from tcloud.domain.states import NamespaceState as RowState
from tcloud.platform.temporal import namespace_served
from tcloud.store import namespaces as store

OWNER_KEY = "tcloud-account"  # in the server namespace's `data`: the account that owns it
_POLL_SECONDS = 0.2
_DAY = 86400


@dataclass
class NamespaceRef:
    namespace: str


@dataclass
class RegisterInput:
    namespace: str
    account_id: str
    retention_days: int
    owner_email: str


@dataclass
class RetentionInput:
    namespace: str
    retention_days: int


@dataclass
class ActivateInput:
    namespace: str
    account_id: str


@dataclass
class FailInput:
    namespace: str
    state: RowState  # the state the row returns to: 'failed' after a failed creation, 'active' after a failed update
    reason: str


class NamespaceActivities:
    """Activities of namespace provisioning, update and deletion."""

    def __init__(self, *, pool: asyncpg.Pool, temporal: Client):
        self._pool = pool
        self._temporal = temporal

    async def _describe(self, namespace: str) -> DescribeNamespaceResponse | None:
        try:
            return await self._temporal.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    @activity.defn
    async def register_namespace(self, params: RegisterInput) -> bool:
        """Register the namespace unless it exists, then wait until the frontend serves it.

        Returns:
            Whether this attempt registered it.
        """
        found = await self._describe(params.namespace)
        created = False
        if found is None:
            try:
                await self._temporal.workflow_service.register_namespace(RegisterNamespaceRequest(
                    namespace=params.namespace,
                    description=f"tcloud namespace of account {params.account_id}",
                    owner_email=params.owner_email,
                    workflow_execution_retention_period=Duration(seconds=params.retention_days * _DAY),
                    data={OWNER_KEY: params.account_id},
                ))
                created = True
            except RPCError as err:
                if err.status == RPCStatusCode.INVALID_ARGUMENT:
                    raise ApplicationError(f"the Temporal server refused the namespace: {err.message}",
                                           non_retryable=True) from err
                if err.status != RPCStatusCode.ALREADY_EXISTS:
                    raise
        while found is None:
            activity.heartbeat()
            await asyncio.sleep(_POLL_SECONDS)
            found = await self._describe(params.namespace)
        owner = found.namespace_info.data.get(OWNER_KEY)
        if owner != params.account_id:
            raise ApplicationError(f"namespace {params.namespace} exists on the server and is not this account's",
                                   non_retryable=True)
        # DescribeNamespace reads the database; calls in the namespace work once every frontend's cache has it.
        while not await namespace_served(self._temporal, params.namespace):
            activity.heartbeat()
            await asyncio.sleep(_POLL_SECONDS)
        return created

    @activity.defn
    async def mark_namespace_active(self, params: ActivateInput) -> None:
        """Record the namespace active and open its ownership (from the moment it was reserved)."""
        await store.activate_namespace_and_open_ownership(self._pool, params.namespace, params.account_id)

    @activity.defn
    async def set_retention(self, params: RetentionInput) -> None:
        """Change the namespace's retention on the server (the same value twice is harmless)."""
        await self._temporal.workflow_service.update_namespace(UpdateNamespaceRequest(
            namespace=params.namespace,
            config=NamespaceConfig(workflow_execution_retention_ttl=Duration(seconds=params.retention_days * _DAY)),
        ))

    @activity.defn
    async def mark_namespace_updated(self, params: RetentionInput) -> None:
        await store.record_namespace_updated(self._pool, params.namespace, params.retention_days)

    @activity.defn
    async def delete_from_server(self, params: NamespaceRef) -> bool:
        """Delete the namespace on the server (if present) and wait until it no longer answers.

        Returns:
            Whether this attempt asked the server to delete it.
        """
        asked = False
        while (found := await self._describe(params.namespace)) is not None:
            if found.namespace_info.state != NamespaceState.NAMESPACE_STATE_DELETED:
                try:
                    await self._temporal.operator_service.delete_namespace(
                        DeleteNamespaceRequest(namespace=params.namespace))
                    asked = True
                except RPCError as err:
                    # A namespace registered moments ago may not be in the frontend's registry cache yet.
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
            activity.heartbeat()
            await asyncio.sleep(_POLL_SECONDS)
        return asked

    @activity.defn
    async def mark_namespace_deleted(self, params: NamespaceRef) -> None:
        """Record the deletion and close the ownership; usage history stays."""
        await store.delete_namespace_and_close_ownership(self._pool, params.namespace)

    @activity.defn
    async def mark_namespace_failed(self, params: FailInput) -> None:
        await store.fail_namespace_operation(self._pool, params.namespace, params.state, params.reason[:1000])
