"""Which workflows and activities the control-plane worker runs, and the clients the activities get.

Each capability registers itself in its own ``workers/cap_<name>.py`` (workflows, activities, schedules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.platform_check import PlatformCheckActivities
from workers import cap_backups, cap_billing, cap_namespaces, cap_usage
from workers.capability import Clients, activity_methods
from workflows.platform_check import PlatformCheckWorkflow

CAPABILITIES = (cap_namespaces, cap_usage, cap_billing, cap_backups)


__all__ = ["CAPABILITIES", "Clients", "activities", "ensure_schedules", "workflows"]


def workflows() -> list[type]:
    found: list[type] = [PlatformCheckWorkflow]
    for cap in CAPABILITIES:
        found += cap.workflows()
    return found


def activities(c: Clients) -> list[Callable[..., Any]]:
    found = activity_methods(PlatformCheckActivities(pool=c.pool, prometheus=c.prometheus, stripe_client=c.stripe))
    for cap in CAPABILITIES:
        found += cap.activities(c)
    return found


async def ensure_schedules(c: Clients) -> None:
    """Create or update every Temporal Schedule the platform relies on (idempotent)."""
    if not c.settings.schedules_enabled:
        return
    for cap in CAPABILITIES:
        await cap.ensure_schedules(c)
