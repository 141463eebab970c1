"""Spend alerts: an account's thresholds, checked against the month-to-date estimate; each threshold
notifies once per period (the notification row is the guard, so a repeated check never notifies twice).
The notification and one pending delivery per configured channel are written in one transaction."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import asyncpg

from tcloud.invoicing import price_account_month

log = logging.getLogger("tcloud.billing.alerts")


async def check_account(pool: asyncpg.Pool, account_id: str, period: str, *,
                        until: datetime | None = None) -> list[int]:
    """Record a notification for every threshold the estimate reached and that was not notified yet.

    Returns:
        The thresholds (cents) notified by this call.
    """
    thresholds = [r["threshold_cents"] for r in await pool.fetch(
        "SELECT threshold_cents FROM spend_alerts WHERE account_id = $1 ORDER BY threshold_cents", account_id)]
    if not thresholds:
        return []
    month = await price_account_month(pool, account_id, period, until=until)
    estimate = month.priced.total_cents
    notified = []
    async with pool.acquire() as conn, conn.transaction():
        channels = await conn.fetchrow("SELECT webhook_url, email FROM spend_alert_channels WHERE account_id = $1",
                                       account_id)
        targets = [(c, channels[f]) for c, f in (("webhook", "webhook_url"), ("email", "email"))
                   if channels is not None and channels[f]]
        for threshold in (t for t in thresholds if t <= estimate):
            fresh = await conn.fetchval(
                """INSERT INTO spend_alert_notifications (account_id, period, threshold_cents, estimate_cents)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
                account_id, period, threshold, estimate)
            if fresh:
                # The outbox: one pending delivery per channel, sent by SpendAlertDeliveryWorkflow.
                await conn.executemany(
                    """INSERT INTO spend_alert_deliveries (account_id, period, threshold_cents, channel, target)
                       VALUES ($1, $2, $3, $4, $5)""",
                    [(account_id, period, threshold, channel, target) for channel, target in targets])
                await conn.execute(
                    "INSERT INTO billing_events (account_id, kind, detail) VALUES ($1, 'spend_alert.notify', $2)",
                    account_id, json.dumps({"period": period, "threshold_cents": threshold,
                                            "estimate_cents": estimate, "channels": [c for c, _ in targets]}))
                log.info("spend alert: %s reached %s cents in %s (estimate %s)", account_id, threshold, period,
                         estimate)
                notified.append(threshold)
    return notified


async def accounts_with_alerts(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        """SELECT DISTINCT s.account_id FROM spend_alerts s JOIN accounts a ON a.id = s.account_id
            WHERE a.status <> 'closed' ORDER BY 1""")
    return [r["account_id"] for r in rows]
