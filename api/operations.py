"""Async operations: the Cloud Ops ``asyncOperation`` id of a request, mapped to the workflow doing the work.

The rows are written by the store (``tcloud.store.operations``, inside the transaction that changes the resource).
The state is read from the workflow itself (describe, and its failure when it failed), never waited for.
"""

from __future__ import annotations

import uuid

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from api.errors import ApiError
from tcloud.store.operations import OperationIdTaken

_STATE = {
    WorkflowExecutionStatus.COMPLETED: AsyncOperation.STATE_FULFILLED,
    WorkflowExecutionStatus.FAILED: AsyncOperation.STATE_FAILED,
    WorkflowExecutionStatus.TIMED_OUT: AsyncOperation.STATE_FAILED,
    WorkflowExecutionStatus.TERMINATED: AsyncOperation.STATE_FAILED,
    WorkflowExecutionStatus.CANCELED: AsyncOperation.STATE_CANCELLED,
}


def new_operation_id(requested: str) -> str:
    """The client's ``asyncOperationId`` if it sent one (checked), else a fresh one."""
    if not requested:
        return str(uuid.uuid4())
    if len(requested) > 128 or not requested.isprintable() or "/" in requested:
        raise ApiError(400, "asyncOperationId must be 1 to 128 printable characters without '/'")
    return requested


def id_taken(err: OperationIdTaken) -> ApiError:
    """The answer to a request whose ``asyncOperationId`` is already used (the store recorded nothing): 409."""
    return ApiError(409, f"asyncOperationId {err.operation_id} is already used", exists=True)


async def describe(temporal: Client, row: asyncpg.Record) -> AsyncOperation:
    """The operation's Cloud Ops view, read from its workflow."""
    op = AsyncOperation(id=row["id"], operation_type=row["operation_type"])
    handle = temporal.get_workflow_handle(row["workflow_id"], run_id=row["run_id"])
    info = await handle.describe()
    if info.status == WorkflowExecutionStatus.RUNNING:
        op.state = AsyncOperation.STATE_PENDING if (info.history_length or 0) <= 2 else AsyncOperation.STATE_IN_PROGRESS
    else:
        op.state = _STATE.get(info.status, AsyncOperation.STATE_FAILED) if info.status else AsyncOperation.STATE_FAILED
    op.state_deprecated = AsyncOperation.State.Name(op.state).removeprefix("STATE_").lower()
    if info.start_time:
        op.started_time.CopyFrom(_timestamp(info.start_time))
    if info.close_time:
        op.finished_time.CopyFrom(_timestamp(info.close_time))
    if op.state == AsyncOperation.STATE_FAILED:
        op.failure_reason = await _failure_reason(temporal, row)
    return op


async def _failure_reason(temporal: Client, row: asyncpg.Record) -> str:
    try:
        await temporal.get_workflow_handle(row["workflow_id"], run_id=row["run_id"]).result(follow_runs=False)
    except WorkflowFailureError as err:
        cause = err.cause
        return getattr(cause, "message", None) or str(cause)
    return "the operation did not complete"


def _timestamp(when: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)  # type: ignore[arg-type]
    return ts
