"""Spend-alert delivery activities: dispatching the pending deliveries, one delivery attempt, giving up.

Each attempt is counted in Postgres before it is made and the outcome after it, so the row shows what
happened even while Temporal is still retrying. A delivery already delivered or failed is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud import alert_delivery
from tcloud.settings import Settings
from tcloud.webhook_targets import TargetRefused

MAX_ERROR_LENGTH = 500


@dataclass
class DeliveryKey:
    account_id: str
    period: str
    threshold_cents: int
    channel: str  # webhook | email


@dataclass
class PendingInput:
    """``redispatch_after_seconds``: a delivery dispatched this long ago and still pending lost its workflow
    (terminated by hand, say) and is dispatched again."""

    redispatch_after_seconds: float
    limit: int = 1000


@dataclass
class PendingDeliveries:
    deliveries: list[DeliveryKey]


@dataclass
class DeliveryOutcome:
    state: str  # delivered | failed
    attempts: int
    detail: str = ""


@dataclass
class FailDelivery:
    key: DeliveryKey
    reason: str


_ROW = """SELECT d.state, d.target, d.attempts, n.estimate_cents,
                 extract(epoch FROM n.notified_at)::bigint AS notified_at, c.webhook_secret
            FROM spend_alert_deliveries d
            JOIN spend_alert_notifications n USING (account_id, period, threshold_cents)
            LEFT JOIN spend_alert_channels c ON c.account_id = d.account_id
           WHERE d.account_id = $1 AND d.period = $2 AND d.threshold_cents = $3 AND d.channel = $4"""
_KEY = "account_id = $1 AND period = $2 AND threshold_cents = $3 AND channel = $4"


def _key_args(key: DeliveryKey) -> tuple[str, str, int, str]:
    return key.account_id, key.period, key.threshold_cents, key.channel


class SpendAlertDeliveryActivities:
    """Sends spend-alert notifications over the account's channels (webhook, email)."""

    def __init__(self, *, pool: asyncpg.Pool, settings: Settings):
        self._pool = pool
        self._settings = settings

    @activity.defn(name="billing.dispatch_alert_deliveries")
    async def dispatch_deliveries(self, params: PendingInput) -> PendingDeliveries:
        """The pending deliveries no workflow is sending yet, marked as dispatched (the caller starts them)."""
        rows = await self._pool.fetch(
            """UPDATE spend_alert_deliveries d SET dispatched_at = now()
                 FROM (SELECT account_id, period, threshold_cents, channel FROM spend_alert_deliveries
                        WHERE state = 'pending' AND (dispatched_at IS NULL
                              OR dispatched_at < now() - make_interval(secs => $1))
                        ORDER BY created_at, account_id, threshold_cents, channel LIMIT $2 FOR UPDATE) p
                WHERE (d.account_id, d.period, d.threshold_cents, d.channel)
                    = (p.account_id, p.period, p.threshold_cents, p.channel)
            RETURNING d.account_id, d.period, d.threshold_cents, d.channel""",
            params.redispatch_after_seconds, params.limit)
        return PendingDeliveries([DeliveryKey(r["account_id"], r["period"], r["threshold_cents"], r["channel"])
                                  for r in rows])

    @activity.defn(name="billing.deliver_spend_alert")
    async def deliver(self, key: DeliveryKey) -> DeliveryOutcome:
        """One attempt. Raises a retryable ``DeliveryFailed`` or a non-retryable ``TargetRefused``."""
        row = await self._pool.fetchrow(_ROW, *_key_args(key))
        if row is None:
            raise ApplicationError(f"no spend-alert delivery {key}", type="UnknownDelivery", non_retryable=True)
        if row["state"] != "pending":
            return DeliveryOutcome(row["state"], row["attempts"], "already settled")
        attempts = await self._pool.fetchval(
            f"UPDATE spend_alert_deliveries SET attempts = attempts + 1 WHERE {_KEY} RETURNING attempts",
            *_key_args(key))
        notification = alert_delivery.Notification(key.account_id, key.period, key.threshold_cents,
                                                   row["estimate_cents"], row["notified_at"])
        try:
            if key.channel == "webhook":
                if row["webhook_secret"] is None:
                    raise TargetRefused("the account removed its webhook before this alert was delivered")
                status = await alert_delivery.send_webhook(
                    notification, url=row["target"], secret=row["webhook_secret"],
                    allow_private=self._settings.alert_webhook_allow_private)
                detail = f"answered {status}"
            else:
                await alert_delivery.send_email(notification, to=row["target"], settings=self._settings)
                detail = "accepted by the SMTP server"
        except TargetRefused as err:
            await self._note_error(key, str(err))
            raise ApplicationError(str(err), type="TargetRefused", non_retryable=True) from None
        except alert_delivery.DeliveryFailed as err:
            await self._note_error(key, str(err))
            raise ApplicationError(str(err), type="DeliveryFailed") from None
        await self._pool.execute(
            f"""UPDATE spend_alert_deliveries SET state = 'delivered', delivered_at = now(), last_error = NULL
                 WHERE {_KEY} AND state = 'pending'""", *_key_args(key))
        return DeliveryOutcome("delivered", attempts, detail)

    @activity.defn(name="billing.fail_spend_alert_delivery")
    async def mark_failed(self, params: FailDelivery) -> DeliveryOutcome:
        """Give up on a delivery (its retries ran out or its target is refused)."""
        row = await self._pool.fetchrow(
            f"""UPDATE spend_alert_deliveries SET state = 'failed',
                       last_error = CASE WHEN last_error IS NULL OR last_error = $5 THEN $5
                                         ELSE left($5 || '; last error: ' || last_error, {MAX_ERROR_LENGTH}) END
                 WHERE {_KEY} AND state = 'pending' RETURNING state, attempts""",
            *_key_args(params.key), params.reason[:MAX_ERROR_LENGTH])
        if row is None:
            row = await self._pool.fetchrow(f"SELECT state, attempts FROM spend_alert_deliveries WHERE {_KEY}",
                                            *_key_args(params.key))
        if row is None:
            raise ApplicationError(f"no spend-alert delivery {params.key}", type="UnknownDelivery",
                                   non_retryable=True)
        return DeliveryOutcome(row["state"], row["attempts"], params.reason)

    async def _note_error(self, key: DeliveryKey, error: str) -> None:
        await self._pool.execute(f"UPDATE spend_alert_deliveries SET last_error = $5 WHERE {_KEY}",
                                 *_key_args(key), error[:MAX_ERROR_LENGTH])
