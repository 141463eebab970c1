"""Which workflows and activities the control-plane worker runs, and the clients the activities get."""

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
from workflows.platform_check import PlatformCheckWorkflow


@dataclass
class Clients:
    """Everything an activity class may receive in ``__init__``."""

    settings: Settings
    pool: asyncpg.Pool
    temporal: Client
    stripe: stripe.StripeClient
    prometheus: PrometheusConnect


def workflows() -> list[type]:
    return [PlatformCheckWorkflow]


def activities(c: Clients) -> list[Callable[..., Any]]:
    check = PlatformCheckActivities(pool=c.pool, prometheus=c.prometheus, stripe_client=c.stripe)
    return [check.check_postgres, check.check_prometheus, check.check_stripe]


async def ensure_schedules(c: Clients) -> None:
    """Create or update every Temporal Schedule the platform relies on (idempotent)."""
