"""Spend-alert tables: ``spend_alerts`` (thresholds), ``spend_alert_channels``, ``spend_alert_notifications`` and
``spend_alert_deliveries`` (the outbox ``SpendAlertDeliveryWorkflow`` settles).

The invariant of the outbox lives in :func:`record_notifications`: a notification and one pending delivery per
configured channel (and the 'spend_alert.notify' billing event) are written in one transaction, so a notification
is never recorded without the deliveries it owes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from tcloud.store._connections import connection
from tcloud.store.invoices import insert_billing_event

# The longest ``last_error`` a delivery keeps (longer errors are cut).
MAX_ERROR_LENGTH = 500

_KEY = "account_id = $1 AND period = $2 AND threshold_cents = $3 AND channel = $4"


class DeliveryId(Protocol):
    """What names one delivery: the notification (account, period, threshold) and the channel."""

    @property
    def account_id(self) -> str: ...

    @property
    def period(self) -> str: ...

    @property
    def threshold_cents(self) -> int: ...

    @property
    def channel(self) -> str: ...


@dataclass(frozen=True)
class SpendAlertsView:
    """An account's spend alerts as stored: thresholds, channels, the latest notifications and their deliveries."""

    thresholds_cents: list[int]
    channels: asyncpg.Record | None  # webhook_url, webhook_secret, email
    notifications: list[asyncpg.Record]  # period, threshold_cents, estimate_cents, notified_at; newest first
    deliveries: list[asyncpg.Record]  # every column, of the notifications above, by channel



def _key_args(key: DeliveryId) -> tuple[str, str, int, str]:
    return key.account_id, key.period, key.threshold_cents, key.channel


# Thresholds and notifications.

async def alert_thresholds(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> list[int]:
    """The account's thresholds in cents, lowest first."""
    return [r["threshold_cents"] for r in await conn.fetch(
        "SELECT threshold_cents FROM spend_alerts WHERE account_id = $1 ORDER BY threshold_cents", account_id)]


async def accounts_with_alerts(conn: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """Ids of the accounts, not closed, that have at least one threshold, in order."""
    rows = await conn.fetch(
        """SELECT DISTINCT s.account_id FROM spend_alerts s JOIN accounts a ON a.id = s.account_id
            WHERE a.status <> 'closed' ORDER BY 1""")
    return [r["account_id"] for r in rows]


async def record_notifications(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, period: str,
                               thresholds_cents: Sequence[int], estimate_cents: int) -> list[int]:
    """Notify each threshold not yet notified in the period, each with its pending deliveries to the account's
    channels and its billing event, all in one transaction.

    Returns:
        The thresholds notified by this call, in the order given.
    """
    notified = []
    async with connection(conn) as c, c.transaction():
        channels = await c.fetchrow("SELECT webhook_url, email FROM spend_alert_channels WHERE account_id = $1",
                                    account_id)
        targets = [(ch, channels[f]) for ch, f in (("webhook", "webhook_url"), ("email", "email"))
                   if channels is not None and channels[f]]
        for threshold in thresholds_cents:
            fresh = await c.fetchval(
                """INSERT INTO spend_alert_notifications (account_id, period, threshold_cents, estimate_cents)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
                account_id, period, threshold, estimate_cents)
            if fresh:
                await c.executemany(
                    """INSERT INTO spend_alert_deliveries (account_id, period, threshold_cents, channel, target)
                       VALUES ($1, $2, $3, $4, $5)""",
                    [(account_id, period, threshold, channel, target) for channel, target in targets])
                await insert_billing_event(c, account_id, "spend_alert.notify", detail={
                    "period": period, "threshold_cents": threshold, "estimate_cents": estimate_cents,
                    "channels": [ch for ch, _ in targets]})
                notified.append(threshold)
    return notified


# Settings as the customer sees and replaces them.

async def spend_alerts_view(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *,
                            notifications: int) -> SpendAlertsView:
    """The account's thresholds, channels, latest ``notifications`` notifications and their deliveries."""
    thresholds = [r["threshold_cents"] for r in await conn.fetch(
        "SELECT threshold_cents FROM spend_alerts WHERE account_id = $1 ORDER BY 1", account_id)]
    channels = await conn.fetchrow(
        "SELECT webhook_url, webhook_secret, email FROM spend_alert_channels WHERE account_id = $1", account_id)
    latest = list(await conn.fetch(
        """SELECT period, threshold_cents, estimate_cents, notified_at FROM spend_alert_notifications
            WHERE account_id = $1 ORDER BY notified_at DESC, threshold_cents DESC LIMIT $2""",
        account_id, notifications))
    deliveries = list(await conn.fetch(
        """SELECT * FROM spend_alert_deliveries
            WHERE account_id = $1 AND (period, threshold_cents) IN
                  (SELECT * FROM unnest($2::text[], $3::bigint[]))
            ORDER BY channel""",
        account_id, [n["period"] for n in latest], [n["threshold_cents"] for n in latest]))
    return SpendAlertsView(thresholds, channels, latest, deliveries)


async def replace_spend_alerts(conn: asyncpg.Pool | asyncpg.Connection, account_id: str, *,
                               thresholds_cents: Sequence[int], webhook_url: str | None, email: str | None,
                               rotate_webhook_secret: bool, new_webhook_secret: str,
                               notifications: int) -> SpendAlertsView:
    """Replace the account's thresholds and channels in one transaction and read them back in it.

    The webhook keeps its secret unless ``rotate_webhook_secret`` (or it had none): then ``new_webhook_secret``;
    no webhook, no secret.
    """
    async with connection(conn) as c, c.transaction():
        await c.execute("DELETE FROM spend_alerts WHERE account_id = $1", account_id)
        await c.executemany("INSERT INTO spend_alerts (account_id, threshold_cents) VALUES ($1, $2)",
                            [(account_id, t) for t in thresholds_cents])
        old = await c.fetchval(
            "SELECT webhook_secret FROM spend_alert_channels WHERE account_id = $1 FOR UPDATE", account_id)
        secret = None
        if webhook_url is not None:
            secret = old if old and not rotate_webhook_secret else new_webhook_secret
        await c.execute(
            """INSERT INTO spend_alert_channels (account_id, webhook_url, webhook_secret, email)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (account_id) DO UPDATE SET webhook_url = $2, webhook_secret = $3, email = $4,
                                                      updated_at = now()""",
            account_id, webhook_url, secret, email)
        return await spend_alerts_view(c, account_id, notifications=notifications)


# Deliveries.

async def dispatch_pending_deliveries(conn: asyncpg.Pool | asyncpg.Connection, *, redispatch_after_seconds: float,
                                      limit: int) -> list[asyncpg.Record]:
    """Mark as dispatched (oldest first, at most ``limit``) the pending deliveries never dispatched or dispatched
    more than ``redispatch_after_seconds`` ago; their ``account_id``, ``period``, ``threshold_cents``, ``channel``."""
    return list(await conn.fetch(
        """UPDATE spend_alert_deliveries d SET dispatched_at = now()
             FROM (SELECT account_id, period, threshold_cents, channel FROM spend_alert_deliveries
                    WHERE state = 'pending' AND (dispatched_at IS NULL
                          OR dispatched_at < now() - make_interval(secs => $1))
                    ORDER BY created_at, account_id, threshold_cents, channel LIMIT $2 FOR UPDATE) p
            WHERE (d.account_id, d.period, d.threshold_cents, d.channel)
                = (p.account_id, p.period, p.threshold_cents, p.channel)
        RETURNING d.account_id, d.period, d.threshold_cents, d.channel""",
        redispatch_after_seconds, limit))


async def delivery_to_send(conn: asyncpg.Pool | asyncpg.Connection, key: DeliveryId) -> asyncpg.Record | None:
    """The delivery's ``state``, ``target``, ``attempts``, its notification's ``estimate_cents`` and ``notified_at``
    (epoch seconds) and the account's current ``webhook_secret``, or None when there is no such delivery."""
    return await conn.fetchrow(
        """SELECT d.state, d.target, d.attempts, n.estimate_cents,
                  extract(epoch FROM n.notified_at)::bigint AS notified_at, c.webhook_secret
             FROM spend_alert_deliveries d
             JOIN spend_alert_notifications n USING (account_id, period, threshold_cents)
             LEFT JOIN spend_alert_channels c ON c.account_id = d.account_id
            WHERE d.account_id = $1 AND d.period = $2 AND d.threshold_cents = $3 AND d.channel = $4""",
        *_key_args(key))


async def count_delivery_attempt(conn: asyncpg.Pool | asyncpg.Connection, key: DeliveryId) -> int:
    """Count one more attempt at the delivery; the attempts so far, this one included."""
    attempts: int = await conn.fetchval(
        f"UPDATE spend_alert_deliveries SET attempts = attempts + 1 WHERE {_KEY} RETURNING attempts",
        *_key_args(key))
    return attempts


async def mark_delivery_delivered(conn: asyncpg.Pool | asyncpg.Connection, key: DeliveryId) -> None:
    """Settle a pending delivery as delivered (one already settled stays as it is)."""
    await conn.execute(
        f"""UPDATE spend_alert_deliveries SET state = 'delivered', delivered_at = now(), last_error = NULL
             WHERE {_KEY} AND state = 'pending'""", *_key_args(key))


async def note_delivery_error(conn: asyncpg.Pool | asyncpg.Connection, key: DeliveryId, error: str) -> None:
    """Keep the error of the delivery's latest attempt (cut to ``MAX_ERROR_LENGTH``)."""
    await conn.execute(f"UPDATE spend_alert_deliveries SET last_error = $5 WHERE {_KEY}",
                       *_key_args(key), error[:MAX_ERROR_LENGTH])


async def mark_delivery_failed(conn: asyncpg.Pool | asyncpg.Connection, key: DeliveryId,
                               reason: str) -> asyncpg.Record | None:
    """Settle a pending delivery as failed for ``reason`` (kept with the last error, cut to ``MAX_ERROR_LENGTH``).

    Returns:
        The delivery's ``state`` and ``attempts`` afterwards (a settled one unchanged), or None when there is none.
    """
    row = await conn.fetchrow(
        f"""UPDATE spend_alert_deliveries SET state = 'failed',
                   last_error = CASE WHEN last_error IS NULL OR last_error = $5 THEN $5
                                     ELSE left($5 || '; last error: ' || last_error, {MAX_ERROR_LENGTH}) END
             WHERE {_KEY} AND state = 'pending' RETURNING state, attempts""",
        *_key_args(key), reason[:MAX_ERROR_LENGTH])
    if row is None:
        row = await conn.fetchrow(f"SELECT state, attempts FROM spend_alert_deliveries WHERE {_KEY}",
                                  *_key_args(key))
    return row
