"""Namespace provisioning, update and deletion as workflows, one per change of a namespace.

Ids: ``namespace/<namespace>/create``, ``namespace/<namespace>/update/<resource version>``,
``namespace/<namespace>/delete``. The API reserved the row (quota and name checked under a lock on the
account) before starting one; a workflow failure leaves the row in a state the customer can act on and
fails with the reason, which ``GET /cloud/operations/{id}`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.namespaces import (
        ActivateInput,
        FailInput,
        NamespaceActivities,
        NamespaceRef,
        RegisterInput,
        RenameInput,
        RetentionInput,
        SearchAttributesInput,
    )
    from tcloud.domain.states import NamespaceState

_DB = timedelta(seconds=30)
_SERVER = timedelta(minutes=2)
_HEARTBEAT = timedelta(seconds=20)
_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


@dataclass
class CreateNamespaceInput:
    namespace: str
    account_id: str
    retention_days: int
    owner_email: str
    search_attributes: dict[str, str] = field(default_factory=dict)  # registered once the namespace is served


@dataclass
class UpdateNamespaceInput:
    namespace: str
    retention_days: int
    resource_version: int
    search_attributes: dict[str, str] | None = None  # all of them after the update; None: unchanged
    renamed: list[str] | None = None  # [existing name, new name] of a RenameCustomSearchAttribute


@dataclass
class DeleteNamespaceInput:
    namespace: str


@dataclass
class NamespaceOperationOutput:
    namespace: str
    state: NamespaceState


def create_workflow_id(namespace: str) -> str:
    return f"namespace/{namespace}/create"


def update_workflow_id(namespace: str, resource_version: int) -> str:
    return f"namespace/{namespace}/update/{resource_version}"


def rename_workflow_id(namespace: str, resource_version: int, new_name: str) -> str:
    """A rename keeps the resource version: the new name tells it from the update of that version."""
    return f"namespace/{namespace}/update/{resource_version}/rename/{new_name}"


def delete_workflow_id(namespace: str) -> str:
    return f"namespace/{namespace}/delete"


def _reason(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)


async def _fail_operation(namespace: str, state: NamespaceState, err: ActivityError) -> NoReturn:
    """Put the namespace back in ``state`` (one the customer can act on), then fail with the reason."""
    reason = _reason(err)
    await workflow.execute_activity_method(
        NamespaceActivities.mark_namespace_failed, FailInput(namespace, state, reason),
        start_to_close_timeout=_DB, retry_policy=_RETRY,
    )
    raise ApplicationError(reason, non_retryable=True) from err


async def _add_search_attributes(namespace: str, attributes: dict[str, str]) -> None:
    await workflow.execute_activity_method(
        NamespaceActivities.add_search_attributes, SearchAttributesInput(namespace, attributes),
        start_to_close_timeout=_SERVER, retry_policy=_RETRY,
    )


async def _rename_search_attribute(namespace: str, existing: str, new: str) -> None:
    rename = RenameInput(namespace, existing, new)
    rename.field = await workflow.execute_activity_method(
        NamespaceActivities.search_attribute_field, rename, start_to_close_timeout=_SERVER, retry_policy=_RETRY,
    )
    await workflow.execute_activity_method(
        NamespaceActivities.rename_search_attribute, rename,
        start_to_close_timeout=_SERVER, heartbeat_timeout=_HEARTBEAT, retry_policy=_RETRY,
    )


@workflow.defn(name="CreateNamespaceWorkflow")
class CreateNamespaceWorkflow:
    """Registers the namespace (and its custom search attributes) on the server, waits until it answers, records it
    active and owned."""

    @workflow.run
    async def run(self, params: CreateNamespaceInput) -> NamespaceOperationOutput:
        try:
            await workflow.execute_activity_method(
                NamespaceActivities.register_namespace,
                RegisterInput(params.namespace, params.account_id, params.retention_days, params.owner_email),
                start_to_close_timeout=_SERVER, heartbeat_timeout=_HEARTBEAT, retry_policy=_RETRY,
            )
            if params.search_attributes:  # inputs from before search attributes have none: the same history
                await _add_search_attributes(params.namespace, params.search_attributes)
            await workflow.execute_activity_method(
                NamespaceActivities.mark_namespace_active, ActivateInput(params.namespace, params.account_id),
                start_to_close_timeout=_DB, retry_policy=_RETRY,
            )
        except ActivityError as err:
            await _fail_operation(params.namespace, "failed", err)
        return NamespaceOperationOutput(params.namespace, "active")


@workflow.defn(name="UpdateNamespaceWorkflow")
class UpdateNamespaceWorkflow:
    """Changes the namespace's retention (and adds its new custom search attributes) on the server, then records
    them."""

    @workflow.run
    async def run(self, params: UpdateNamespaceInput) -> NamespaceOperationOutput:
        retention = RetentionInput(params.namespace, params.retention_days, params.search_attributes)
        try:
            await workflow.execute_activity_method(
                NamespaceActivities.set_retention, RetentionInput(params.namespace, params.retention_days),
                start_to_close_timeout=_SERVER, retry_policy=_RETRY,
            )
            if params.renamed:  # search_attributes are then all of them after the rename, none new
                await _rename_search_attribute(params.namespace, *params.renamed)
            elif params.search_attributes:  # inputs from before search attributes have none: the same history
                await _add_search_attributes(params.namespace, params.search_attributes)
            await workflow.execute_activity_method(
                NamespaceActivities.mark_namespace_updated, retention,
                start_to_close_timeout=_DB, retry_policy=_RETRY,
            )
        except ActivityError as err:
            await _fail_operation(params.namespace, "active", err)
        return NamespaceOperationOutput(params.namespace, "active")


@workflow.defn(name="DeleteNamespaceWorkflow")
class DeleteNamespaceWorkflow:
    """Deletes the namespace from the server, then records it deleted and closes its ownership."""

    @workflow.run
    async def run(self, params: DeleteNamespaceInput) -> NamespaceOperationOutput:
        ref = NamespaceRef(params.namespace)
        try:
            await workflow.execute_activity_method(
                NamespaceActivities.delete_from_server, ref,
                start_to_close_timeout=_SERVER, heartbeat_timeout=_HEARTBEAT, retry_policy=_RETRY,
            )
            await workflow.execute_activity_method(
                NamespaceActivities.mark_namespace_deleted, ref, start_to_close_timeout=_DB, retry_policy=_RETRY,
            )
        except ActivityError as err:
            await _fail_operation(params.namespace, "active", err)
        return NamespaceOperationOutput(params.namespace, "deleted")
