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
from temporalio.api.enums.v1 import IndexedValueType, NamespaceState
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DescribeNamespaceRequest,
    DescribeNamespaceResponse,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from tcloud.domain.states import NamespaceState as RowState
from tcloud.platform.temporal import ensure_search_attributes, namespace_served
from tcloud.store import namespaces as store

OWNER_KEY = "tcloud-account"  # in the server namespace's `data`: the account that owns it
_POLL_SECONDS = 0.2
_DAY = 86400
_SERVED_WITHIN = 60.0  # seconds for the frontend's namespace cache to map new search attributes (refresh: ~1-10 s)
# A literal of each type, for the query that tells when the frontend knows the namespace's attributes.
_PROBE = {"Text": "'probe'", "Keyword": "'probe'", "KeywordList": "'probe'", "Int": "0", "Double": "0",
          "Bool": "false", "Datetime": "'2000-01-01T00:00:00Z'"}
# The server's type of each custom search attribute type (tcloud.domain.search_attributes.TYPES).
INDEXED_TYPES: dict[str, IndexedValueType.ValueType] = {
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


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
    search_attributes: dict[str, str] | None = None  # recorded with the retention when set (all, not only new ones)


@dataclass
class RenameInput:
    namespace: str
    existing_name: str
    new_name: str
    field: str = ""  # the visibility column the attribute is an alias of (search_attribute_field finds it)


@dataclass
class SearchAttributesInput:
    namespace: str
    attributes: dict[str, str]  # name -> type (tcloud.domain.search_attributes.TYPES)


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
        await store.record_namespace_updated(self._pool, params.namespace, params.retention_days,
                                             params.search_attributes)

    @activity.defn(name="namespaces.add_search_attributes")
    async def add_search_attributes(self, params: SearchAttributesInput) -> list[str]:
        """Register the namespace's custom search attributes the server lacks (through the operator service).

        Returns:
            The names this attempt added.
        """
        wanted = {name: INDEXED_TYPES[kind] for name, kind in params.attributes.items()}
        listed = await self._temporal.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=params.namespace))
        retyped = sorted(n for n, kind in wanted.items()
                         if n in listed.custom_attributes and listed.custom_attributes[n] != kind)
        if retyped:
            raise ApplicationError(f"search attributes exist on the server with another type: {', '.join(retyped)}",
                                   non_retryable=True)
        try:
            added = await ensure_search_attributes(self._temporal, params.namespace, wanted, wait_seconds=60)
        except RPCError as err:
            if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION):
                raise ApplicationError(f"the Temporal server refused the search attributes: {err.message}",
                                       non_retryable=True) from err
            raise
        # The server lists them at once; calls that use them work once the frontend's namespace cache maps them.
        query = " AND ".join(f"{name} = {_PROBE[kind]}" for name, kind in sorted(params.attributes.items()))
        deadline = asyncio.get_running_loop().time() + _SERVED_WITHIN
        while (refusal := await self._query_refusal(params.namespace, query)) is not None:
            if asyncio.get_running_loop().time() > deadline:
                raise ApplicationError(f"the Temporal server lists the search attributes but refuses a query on them: "
                                       f"{refusal}", non_retryable=True)
            activity.heartbeat()
            await asyncio.sleep(_POLL_SECONDS)
        return added

    @activity.defn(name="namespaces.search_attribute_field")
    async def search_attribute_field(self, params: RenameInput) -> str:
        """The visibility column (e.g. ``Keyword01``) a custom search attribute of the namespace is the alias of,
        before a rename (SQL visibility keeps ``field -> name`` in the namespace's config)."""
        aliases = await self._aliases(params.namespace)
        for field, alias in aliases.items():
            if alias in (params.existing_name, params.new_name):
                return field
        raise ApplicationError(f"search attribute {params.existing_name} is not on the namespace on the server",
                               non_retryable=True)

    @activity.defn(name="namespaces.rename_search_attribute")
    async def rename_search_attribute(self, params: RenameInput) -> None:
        """Make ``params.field`` the alias ``new_name`` (the server allocates a field once, so the old alias is removed
        first; a retry carries on from either step), then wait until the frontend maps it in a query. Values already
        indexed stay in the field: workflows are found by the new name."""
        aliases = await self._aliases(params.namespace)
        if aliases.get(params.field) not in (params.existing_name, params.new_name, None):
            raise ApplicationError(f"field {params.field} of {params.namespace} is now {aliases[params.field]}",
                                   non_retryable=True)
        if aliases.get(params.field) == params.existing_name:
            await self._set_alias(params.namespace, params.field, "")
        if aliases.get(params.field) != params.new_name:
            await self._set_alias(params.namespace, params.field, params.new_name)
        type_of = {v: k for k, v in INDEXED_TYPES.items()}
        listed = await self._temporal.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=params.namespace))
        kind = "Keyword"
        if params.new_name in listed.custom_attributes:
            kind = type_of.get(listed.custom_attributes[params.new_name], kind)
        probe = f"{params.new_name} = {_PROBE[kind]}"
        deadline = asyncio.get_running_loop().time() + _SERVED_WITHIN
        while (refusal := await self._query_refusal(params.namespace, probe)) is not None:
            if asyncio.get_running_loop().time() > deadline:
                raise ApplicationError(f"the renamed search attribute is not served: {refusal}", non_retryable=True)
            activity.heartbeat()
            await asyncio.sleep(_POLL_SECONDS)

    async def _aliases(self, namespace: str) -> dict[str, str]:
        found = await self._temporal.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
        return dict(found.config.custom_search_attribute_aliases)

    async def _set_alias(self, namespace: str, field: str, alias: str) -> None:
        try:
            await self._temporal.workflow_service.update_namespace(UpdateNamespaceRequest(
                namespace=namespace, config=NamespaceConfig(custom_search_attribute_aliases={field: alias})))
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                raise ApplicationError(f"the Temporal server refused the rename: {err.message}",
                                       non_retryable=True) from err
            raise

    async def _query_refusal(self, namespace: str, query: str) -> str | None:
        """Why the frontend refuses a visibility query (e.g. "no mapping defined for search attribute"), or None."""
        try:
            await self._temporal.workflow_service.count_workflow_executions(
                CountWorkflowExecutionsRequest(namespace=namespace, query=query))
            return None
        except RPCError as err:
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                return err.message
            raise

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
