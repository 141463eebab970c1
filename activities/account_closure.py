"""Account closure's I/O: closing the account for good once its grace is over, and handing its namespaces to
the deletion workflows the API uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud.store import accounts as accounts_store
from tcloud.store import namespaces as namespaces_store
from tcloud.store.operations import OperationIdTaken
from workflows.namespaces import delete_workflow_id


@dataclass
class ClosureRef:
    account_id: str


@dataclass
class ClosureFinished:
    """``closed`` False: the account was reopened in the meantime, and nothing was done."""

    closed: bool
    closed_at: datetime | None = None


@dataclass
class NamespacesToDelete:
    namespaces: list[str]


def closure_operation_id(namespace: str, closure_run_id: str) -> str:
    """The async operation a closure records for deleting ``namespace``: the same for every attempt of one
    closure, another for a later closure of the same account."""
    return f"closure-{closure_run_id}-{namespace}"


class AccountClosureActivities:
    """Postgres side of closing an account. Every step is safe to run twice."""

    def __init__(self, *, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="accounts.finish_closure")
    async def finish_closure(self, params: ClosureRef) -> ClosureFinished:
        """Close a closing account for good (nothing new is billed after its closure); a reopened one stays."""
        row = await accounts_store.finish_account_closure(self._pool, params.account_id)
        return ClosureFinished(row is not None, row["closed_at"] if row is not None else None)

    @activity.defn(name="accounts.begin_namespace_deletions")
    async def begin_namespace_deletions(self, params: ClosureRef) -> NamespacesToDelete:
        """Move each of the account's live namespaces to 'deleting' with an operation of its own, and name the
        ones whose deletion workflow is to start (those 'deleting' already are named again: starting one twice
        is refused by its workflow id)."""
        rows = await namespaces_store.list_account_namespaces(self._pool, params.account_id, limit=10_000)
        busy = [r["namespace"] for r in rows if r["state"] in ("provisioning", "updating")]
        if busy:  # retried by the activity's policy until their operations end
            raise ApplicationError(f"namespaces {busy} have an operation under way: waiting for it to finish")
        to_delete: list[str] = []
        closure = activity.info().workflow_run_id or ""  # one closure: the run that started these deletions
        for row in rows:
            ns = row["namespace"]
            if row["state"] == "deleting":
                to_delete.append(ns)
                continue
            try:
                change = await namespaces_store.begin_namespace_deletion(
                    self._pool, namespace=ns, account_id=params.account_id,
                    operation_id=closure_operation_id(ns, closure), workflow_id=delete_workflow_id(ns),
                    check=lambda _row: None)
            except OperationIdTaken:  # an earlier attempt of this closure began it (and it is 'deleting')
                change = None
            if change is not None:
                to_delete.append(ns)
        return NamespacesToDelete(to_delete)
