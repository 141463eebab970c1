"""Which workflows and activities the control-plane worker runs, and the clients the activities get.

Each capability registers itself in its own ``workers/cap_<name>.py`` (workflows, activities, schedules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import stripe
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client

from activities.platform_check import PlatformCheckActivities
from tcloud.settings import Settings
from workers import cap_backups, cap_billing, cap_namespaces, cap_usage
from workflows.platform_check import PlatformCheckWorkflow

CAPABILITIES = (cap_namespaces, cap_usage, cap_billing, cap_backups)


@dataclass
class Clients:
    """Everything an activity class may receive in ``__init__``."""

    settings: Settings
    pool: asyncpg.Pool
    temporal: Client
    stripe: stripe.StripeClient
    prometheus: PrometheusConnect


def workflows() -> list[type]:
    found: list[type] = [PlatformCheckWorkflow]
    for cap in CAPABILITIES:
        found += cap.workflows()
    return found


def activities(c: Clients) -> list[Callable[..., Any]]:
    check = PlatformCheckActivities(pool=c.pool, prometheus=c.prometheus, stripe_client=c.stripe)
    found: list[Callable[..., Any]] = [check.check_postgres, check.check_prometheus, check.check_stripe]
    for cap in CAPABILITIES:
        found += cap.activities(c)
    return found


async def ensure_schedules(c: Clients) -> None:
    """Create or update every Temporal Schedule the platform relies on (idempotent)."""
    if not c.settings.schedules_enabled:
        return
    for cap in CAPABILITIES:
        await cap.ensure_schedules(c)
