"""What a capability's registration (``workers/cap_<name>.py``) receives and how it lists its activities.

``Clients`` lives here, not in ``workers/registry.py``, so the capabilities and the registry that gathers them
import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import stripe
from prometheus_api_client import PrometheusConnect
from temporalio.client import Client

from tcloud.settings import Settings


@dataclass
class Clients:
    """Everything an activity class may receive in ``__init__``."""

    settings: Settings
    pool: asyncpg.Pool
    temporal: Client
    stripe: stripe.StripeClient
    prometheus: PrometheusConnect


def activity_methods(*instances: object) -> list[Callable[..., Any]]:
    """Every ``@activity.defn`` method of each activities object, so registering a class cannot forget one.

    Raises:
        ValueError: an object has no activity at all (a class passed by mistake, or its decorators lost).
    """
    found: list[Callable[..., Any]] = []
    for instance in instances:
        methods = [getattr(instance, name) for name in sorted(dir(type(instance)))
                   if hasattr(getattr(type(instance), name), "__temporal_activity_definition")]
        if not methods:
            raise ValueError(f"{type(instance).__name__} has no @activity.defn method")
        found += methods
    return found
