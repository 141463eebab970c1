"""Usage collection activities: one hour of actions (Prometheus) or storage (visibility) into the ledger.

Both are safe to run twice: an hour already recorded in ``usage_collected_hours`` is left exactly as it is.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from prometheus_api_client import PrometheusConnect
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import usage_ledger, usage_sources
from activities.usage_ledger import LedgerRow
from tcloud.domain import metering
from tcloud.domain.metering import HOUR, floor_hour
from tcloud.settings import Settings

log = logging.getLogger(__name__)

_STORAGE_CONCURRENCY = 64
_MAX_REPORTED = 20


@dataclass
class CollectHourInput:
    """Which collector and which UTC hour; ``provisional`` collects an hour still open and never completes it."""

    collector: str
    hour: datetime
    provisional: bool = False


@dataclass
class CollectHourOutput:
    collector: str
    hour: datetime
    written: bool  # False: the hour was already collected and nothing changed
    namespaces: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)  # metric -> quantity over all namespaces
    unattributed: list[str] = field(default_factory=list)  # label values with usage but no known owner
    prometheus_queries: int = 0


@dataclass
class PendingHoursInput:
    collector: str
    through: datetime  # exclusive
    max_hours: int = 168
    from_hour: datetime | None = None  # also owe missing hours from here (default: the hour before `through`)


@dataclass
class PendingHoursOutput:
    hours: list[datetime]
    more: bool


class UsageActivities:
    """Metering activities; each receives its clients once, in ``__init__``."""

    def __init__(self, *, settings: Settings, pool: asyncpg.Pool, prometheus: PrometheusConnect, temporal: Client):
        self._settings = settings
        self._pool = pool
        self._prometheus = prometheus
        self._temporal = temporal

    @activity.defn
    async def pending_hours(self, params: PendingHoursInput) -> PendingHoursOutput:
        """The hours a collector still owes before ``through``, from its watermark."""
        hours, more = await usage_ledger.pending_hours(self._pool, params.collector, params.through,
                                                       params.max_hours, params.from_hour)
        return PendingHoursOutput(hours, more)

    @activity.defn
    async def collect_actions_hour(self, params: CollectHourInput) -> CollectHourOutput:
        """Exact billable actions per namespace for one hour, from the raw samples of the server's counter."""
        hour = floor_hour(params.hour)
        if await usage_ledger.is_collected(self._pool, "actions", hour):
            return CollectHourOutput("actions", hour, written=False)
        end = await self._window_end(hour, params.provisional)
        owners = await usage_ledger.owners_for_hour(self._pool, hour, self._settings.control_namespace)
        try:
            labels = metering.namespace_label_map(owners)
            window = await asyncio.to_thread(
                usage_sources.action_window, self._prometheus, hour, end,
                namespace_label=self._settings.prometheus_namespace_label,
                baseline_lookback=self._settings.usage_baseline_lookback)
        except metering.MeteringError as err:
            raise ApplicationError(str(err), type="MeteringError", non_retryable=True) from err
        rows: list[LedgerRow] = []
        unattributed: list[str] = []
        for label, per_type in sorted(window.counts.items()):
            namespace = labels.get(label)
            if namespace is None:
                unattributed.append(label)
                continue
            rows.append(LedgerRow(namespace, "actions", Decimal(sum(per_type.values())), owners[namespace]))
        if unattributed:
            log.info("hour %s: actions in %d namespaces nobody owned: %s", hour, len(unattributed),
                     unattributed[:_MAX_REPORTED])
        written = await usage_ledger.write_hour(self._pool, "actions", hour, ["actions"], rows,
                                                final=not params.provisional)
        return CollectHourOutput("actions", hour, written, namespaces=len(rows),
                                 totals={"actions": sum((r.quantity for r in rows), Decimal(0))},
                                 unattributed=unattributed[:_MAX_REPORTED], prometheus_queries=window.queries)

    async def _window_end(self, hour: datetime, provisional: bool) -> datetime:
        now = datetime.now(UTC)
        end = hour + HOUR
        if provisional:
            if now <= hour:
                raise ApplicationError(f"hour {hour.isoformat()} has not begun", non_retryable=True)
            return min(end, now)
        if now < end:
            raise ApplicationError(f"hour {hour.isoformat()} is not over yet", non_retryable=True)
        latest = await asyncio.to_thread(usage_sources.latest_scrape, self._prometheus)
        if latest is None or latest < end:
            # Retryable: the window is final only once every target has been scraped past its end.
            raise ApplicationError(f"Prometheus has not scraped past {end.isoformat()} yet (latest {latest})",
                                   type="PrometheusNotCaughtUp")
        return end

    @activity.defn
    async def collect_storage_hour(self, params: CollectHourInput) -> CollectHourOutput:
        """Active and retained storage byte-hours per namespace for one hour, from visibility."""
        hour = floor_hour(params.hour)
        if await usage_ledger.is_collected(self._pool, "storage", hour):
            return CollectHourOutput("storage", hour, written=False)
        if not params.provisional and datetime.now(UTC) < hour + HOUR:
            raise ApplicationError(f"hour {hour.isoformat()} is not over yet", non_retryable=True)
        owners = await usage_ledger.owners_for_hour(self._pool, hour, self._settings.control_namespace)
        # Every namespace's retention in a few calls; one the server does not know (deleted) has no storage.
        retentions = await usage_sources.namespace_retentions(self._temporal)
        # Visibility answers one namespace per call: the calls of every namespace share these slots.
        limit = asyncio.Semaphore(_STORAGE_CONCURRENCY)

        async def measure(namespace: str) -> tuple[str, int, int]:
            retention = retentions.get(namespace)
            if retention is None:
                return namespace, 0, 0
            executions = await usage_sources.executions_for_hour(self._temporal, namespace, hour, retention, limit)
            activity.heartbeat(namespace)
            return (namespace, *metering.storage_byte_hours(executions, hour, retention))

        rows: list[LedgerRow] = []
        for namespace, active, retained in await asyncio.gather(*(measure(ns) for ns in sorted(owners))):
            for metric, quantity in (("active_storage", active), ("retained_storage", retained)):
                if quantity:
                    rows.append(LedgerRow(namespace, metric, Decimal(quantity), owners[namespace]))
        written = await usage_ledger.write_hour(self._pool, "storage", hour, ["active_storage", "retained_storage"],
                                                rows, final=not params.provisional)
        totals: dict[str, Decimal] = {"active_storage": Decimal(0), "retained_storage": Decimal(0)}
        for r in rows:
            totals[r.metric] += r.quantity
        return CollectHourOutput("storage", hour, written, namespaces=len({r.namespace for r in rows}),
                                 totals=totals)
