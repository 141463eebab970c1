"""The plans an account can be on. Their prices and allocations live in the price book (tcloud.domain.pricing)."""

from __future__ import annotations

from typing import Literal

Plan = Literal["essentials", "business", "payg"]
PLANS: tuple[Plan, ...] = ("essentials", "business", "payg")
DEFAULT_PLAN: Plan = "essentials"

# How many namespaces an account on each plan may hold at once.
NAMESPACE_QUOTA: dict[Plan, int] = {"essentials": 10, "business": 100, "payg": 10}
