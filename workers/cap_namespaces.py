"""Registration of the namespaces capability: accounts' set-up and closure, and namespace provisioning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.account_closure import AccountClosureActivities
from activities.accounts import AccountActivities
from activities.namespaces import NamespaceActivities
from workers.capability import Clients, activity_methods
from workflows.account_closure import AccountClosureWorkflow
from workflows.accounts import AccountSetupWorkflow
from workflows.namespaces import CreateNamespaceWorkflow, DeleteNamespaceWorkflow, UpdateNamespaceWorkflow


def workflows() -> list[type]:
    return [AccountSetupWorkflow, AccountClosureWorkflow, CreateNamespaceWorkflow, UpdateNamespaceWorkflow,
            DeleteNamespaceWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    return activity_methods(AccountActivities(pool=c.pool, stripe_client=c.stripe),
                            AccountClosureActivities(pool=c.pool),
                            NamespaceActivities(pool=c.pool, temporal=c.temporal))


async def ensure_schedules(c: Clients) -> None:
    """This capability has no schedules: everything it does is started by an API call."""
