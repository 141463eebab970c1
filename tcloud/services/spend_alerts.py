"""Spend alerts: an account's thresholds, checked against the month-to-date estimate; each threshold
notifies once per period (the notification row is the guard, so a repeated check never notifies twice).
The notification and one pending delivery per configured channel are written in one transaction."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from tcloud.services.invoicing import price_account_month
from tcloud.store import spend_alerts as store

log = logging.getLogger("tcloud.billing.alerts")


async def check_account(pool: asyncpg.Pool, account_id: str, period: str, *,
                        until: datetime | None = None) -> list[int]:
    """Record a notification for every threshold the estimate reached and that was not notified yet.

    Returns:
        The thresholds (cents) notified by this call.
    """
    thresholds = await store.alert_thresholds(pool, account_id)
    if not thresholds:
        return []
    month = await price_account_month(pool, account_id, period, until=until)
    estimate = month.priced.total_cents
    # The outbox: each notification comes with one pending delivery per channel, sent by SpendAlertDeliveryWorkflow.
    notified = await store.record_notifications(pool, account_id, period, [t for t in thresholds if t <= estimate],
                                                estimate)
    for threshold in notified:
        log.info("spend alert: %s reached %s cents in %s (estimate %s)", account_id, threshold, period, estimate)
    return notified


async def accounts_with_alerts(pool: asyncpg.Pool) -> list[str]:
    """Ids of the accounts (not closed) with at least one spend alert, in order."""
    return await store.accounts_with_alerts(pool)
