"""Registration of the billing capability: its workflows, activities and schedules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.registry import Clients


def workflows() -> list[type]:
    return []


def activities(c: Clients) -> list[Callable[..., Any]]:
    return []


async def ensure_schedules(c: Clients) -> None:
    """Create or update this capability's Temporal Schedules (idempotent)."""
