"""One round trip to each outside system, used by the platform self-check workflow."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import stripe
from prometheus_api_client import PrometheusConnect
from temporalio import activity

from tcloud.store import platform as platform_store


@dataclass
class CheckResult:
    component: str
    detail: str


class PlatformCheckActivities:
    """Each method proves one dependency answers for real."""

    def __init__(self, *, pool: asyncpg.Pool, prometheus: PrometheusConnect, stripe_client: stripe.StripeClient):
        self._pool = pool
        self._prometheus = prometheus
        self._stripe = stripe_client

    @activity.defn
    async def check_postgres(self) -> CheckResult:
        migrations = await platform_store.applied_migration_count(self._pool)
        return CheckResult("postgres", f"{migrations} migrations applied")

    @activity.defn
    async def check_prometheus(self) -> CheckResult:
        result = await asyncio.to_thread(self._prometheus.custom_query, "up")
        up = sum(1 for r in result if r["value"][1] == "1")
        return CheckResult("prometheus", f"{up}/{len(result)} scrape targets up")

    @activity.defn
    async def check_stripe(self) -> CheckResult:
        customers = await self._stripe.v1.customers.list_async({"limit": 1})
        return CheckResult("stripe", f"reachable ({len(customers.data)} customer listed)")
