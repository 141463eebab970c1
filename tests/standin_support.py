"""Helpers for the unit-level Temporal tests: stand-in activities for the real workflows on the time-skipping
test server, in the style of temporalio/samples-python.

A stand-in is a plain function registered under the activity type name of a real activity, so the real
workflow calls it unchanged. ``standin(name)`` refuses a name that no real activity class registers: were a real
activity renamed, the workflow would schedule a type nobody polls and the test would hang instead of failing.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.accounts import AccountActivities
from activities.backup import BackupActivities
from activities.billing import BillingActivities, SpendAlertActivities
from activities.namespaces import NamespaceActivities
from activities.spend_alert_delivery import SpendAlertDeliveryActivities
from activities.usage import UsageActivities
from tcloud.platform.temporal import SEARCH_ATTRIBUTES

F = TypeVar("F", bound=Callable[..., Any])

REAL_ACTIVITY_CLASSES: tuple[type, ...] = (
    AccountActivities, NamespaceActivities, UsageActivities, BillingActivities, SpendAlertActivities,
    SpendAlertDeliveryActivities, BackupActivities,
)


def activity_names(cls: type) -> set[str]:
    """The activity type names ``cls`` registers (what ``workers.capability.activity_methods`` finds)."""
    names = set()
    for attr in dir(cls):
        defn = getattr(getattr(cls, attr), "__temporal_activity_definition", None)
        if defn is not None:
            names.add(defn.name)
    return names


REAL_ACTIVITY_NAMES: frozenset[str] = frozenset().union(*(activity_names(c) for c in REAL_ACTIVITY_CLASSES))


def standin(name: str) -> Callable[[F], F]:
    """``@activity.defn(name=name)``, refusing a name no real activity has."""
    if name not in REAL_ACTIVITY_NAMES:
        raise AssertionError(f"no real activity is named {name!r}; known: {sorted(REAL_ACTIVITY_NAMES)}")
    return activity.defn(name=name)


@dataclass
class Call:
    """One stand-in invocation: its argument and what ``activity.info()`` said about it."""

    name: str
    arg: Any
    attempt: int
    # The server's (skipped) time this attempt started. Not current_attempt_scheduled_time: the time-skipping
    # test server reports the previous attempt's there.
    started: datetime
    workflow_id: str | None


@dataclass
class Calls:
    """What the stand-ins of one test were asked, in order."""

    log: list[Call] = field(default_factory=list)

    def record(self, arg: Any = None) -> Call:
        info = activity.info()
        call = Call(info.activity_type, arg, info.attempt, info.started_time, info.workflow_id)
        self.log.append(call)
        return call

    def named(self, name: str) -> list[Call]:
        return [c for c in self.log if c.name == name]

    def names(self) -> list[str]:
        return [c.name for c in self.log]

    def args(self, name: str) -> list[Any]:
        return [c.arg for c in self.named(name)]


def hours_after(start: datetime, calls: list[Call]) -> list[float]:
    """When each call started, in hours after ``start`` (to a hundredth of an hour)."""
    return [round((c.started - start) / timedelta(hours=1), 2) for c in calls]


def gaps_seconds(calls: list[Call]) -> list[int]:
    """Seconds between consecutive calls' starts (a retry policy's backoff)."""
    return [round((b.started - a.started).total_seconds()) for a, b in itertools.pairwise(calls)]


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    """The platform's custom search attributes on the test server (the worker registers them on the real one)."""
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=env.client.namespace, search_attributes=SEARCH_ATTRIBUTES))


@asynccontextmanager
async def standin_worker(env: WorkflowEnvironment, workflows: Sequence[type],
                         activities: Sequence[Callable[..., Any]]) -> AsyncIterator[str]:
    """A worker of the real ``workflows`` with stand-in ``activities`` on a fresh task queue (yielded)."""
    queue = f"standins-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=list(workflows), activities=list(activities)):
        yield queue


def workflow_id(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"
