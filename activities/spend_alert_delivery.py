"""Spend-alert delivery activities: dispatching the pending deliveries, one delivery attempt, giving up.

Each attempt is counted in Postgres before it is made and the outcome after it, so the row shows what
happened even while Temporal is still retrying. A delivery already delivered or failed is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from tcloud.adapters import spend_alert_delivery
from tcloud.adapters.webhook_targets import TargetRefused
from tcloud.domain.states import DeliveryChannel, DeliveryState
from tcloud.settings import Settings
from tcloud.store import spend_alerts as store


@dataclass
class DeliveryKey:
    account_id: str
    period: str
    threshold_cents: int
    channel: DeliveryChannel


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
    state: DeliveryState
    attempts: int
    detail: str = ""


@dataclass
class FailDelivery:
    key: DeliveryKey
    reason: str


class SpendAlertDeliveryActivities:
    """Sends spend-alert notifications over the account's channels (webhook, email)."""

    def __init__(self, *, pool: asyncpg.Pool, settings: Settings):
        self._pool = pool
        self._settings = settings

    @activity.defn(name="billing.dispatch_alert_deliveries")
    async def dispatch_deliveries(self, params: PendingInput) -> PendingDeliveries:
        """The pending deliveries no workflow is sending yet, marked as dispatched (the caller starts them)."""
        rows = await store.dispatch_pending_deliveries(
            self._pool, redispatch_after_seconds=params.redispatch_after_seconds, limit=params.limit)
        return PendingDeliveries([DeliveryKey(r["account_id"], r["period"], r["threshold_cents"], r["channel"])
                                  for r in rows])

    @activity.defn(name="billing.deliver_spend_alert")
    async def deliver(self, key: DeliveryKey) -> DeliveryOutcome:
        """One attempt. Raises a retryable ``DeliveryFailed`` or a non-retryable ``TargetRefused``."""
        row = await store.delivery_to_send(self._pool, key)
        if row is None:
            raise ApplicationError(f"no spend-alert delivery {key}", type="UnknownDelivery", non_retryable=True)
        if row["state"] != "pending":
            return DeliveryOutcome(row["state"], row["attempts"], "already settled")
        attempts = await store.count_delivery_attempt(self._pool, key)
        notification = spend_alert_delivery.Notification(key.account_id, key.period, key.threshold_cents,
                                                   row["estimate_cents"], row["notified_at"])
        try:
            if key.channel == "webhook":
                if row["webhook_secret"] is None:
                    raise TargetRefused("the account removed its webhook before this alert was delivered")
                status = await spend_alert_delivery.send_webhook(
                    notification, url=row["target"], secret=row["webhook_secret"],
                    allow_private=self._settings.alert_webhook_allow_private)
                detail = f"answered {status}"
            else:
                await spend_alert_delivery.send_email(notification, to=row["target"], settings=self._settings)
                detail = "accepted by the SMTP server"
        except TargetRefused as err:
            await store.note_delivery_error(self._pool, key, str(err))
            raise ApplicationError(str(err), type="TargetRefused", non_retryable=True) from None
        except spend_alert_delivery.DeliveryFailed as err:
            await store.note_delivery_error(self._pool, key, str(err))
            raise ApplicationError(str(err), type="DeliveryFailed") from None
        await store.mark_delivery_delivered(self._pool, key)
        return DeliveryOutcome("delivered", attempts, detail)

    @activity.defn(name="billing.fail_spend_alert_delivery")
    async def mark_failed(self, params: FailDelivery) -> DeliveryOutcome:
        """Give up on a delivery (its retries ran out or its target is refused)."""
        row = await store.mark_delivery_failed(self._pool, params.key, params.reason)
        if row is None:
            raise ApplicationError(f"no spend-alert delivery {params.key}", type="UnknownDelivery",
                                   non_retryable=True)
        return DeliveryOutcome(row["state"], row["attempts"], params.reason)
