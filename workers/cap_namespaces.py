"""Registration of the namespaces capability: accounts' set-up and namespace provisioning workflows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from activities.accounts import AccountActivities
from activities.namespaces import NamespaceActivities
from workflows.accounts import AccountSetupWorkflow
from workflows.namespaces import CreateNamespaceWorkflow, DeleteNamespaceWorkflow, UpdateNamespaceWorkflow

if TYPE_CHECKING:
    from workers.registry import Clients


def workflows() -> list[type]:
    return [AccountSetupWorkflow, CreateNamespaceWorkflow, UpdateNamespaceWorkflow, DeleteNamespaceWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    accounts = AccountActivities(pool=c.pool, stripe_client=c.stripe)
    namespaces = NamespaceActivities(pool=c.pool, temporal=c.temporal)
    return [
        accounts.ensure_stripe_customer,
        namespaces.register_namespace,
        namespaces.mark_namespace_active,
        namespaces.set_retention,
        namespaces.mark_namespace_updated,
        namespaces.delete_from_server,
        namespaces.mark_namespace_deleted,
        namespaces.mark_namespace_failed,
    ]


async def ensure_schedules(c: Clients) -> None:
    """This capability has no schedules: everything it does is started by an API call."""
