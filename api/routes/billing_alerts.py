"""Routes: spend alerts. An account's thresholds, where alerts go (a signed webhook, an email address) and
the latest notifications with the state of each delivery."""

from __future__ import annotations

import secrets

import asyncpg
from aiohttp import web

from api.auth import require_customer
from api.billing_models import AlertDeliveryOut, AlertNotificationOut, SpendAlerts, SpendAlertsOut
from api.bodies import parse
from api.errors import ApiError
from api.keys import POOL, SETTINGS
from api.openapi import documented
from tcloud.webhook_targets import check_webhook_url

routes = web.RouteTableDef()
TAGS = ("billing",)
NOTIFICATIONS_SHOWN = 50


async def _alerts_out(conn: asyncpg.Connection | asyncpg.Pool, account_id: str) -> SpendAlertsOut:
    thresholds = [r["threshold_cents"] for r in await conn.fetch(
        "SELECT threshold_cents FROM spend_alerts WHERE account_id = $1 ORDER BY 1", account_id)]
    channels = await conn.fetchrow(
        "SELECT webhook_url, webhook_secret, email FROM spend_alert_channels WHERE account_id = $1", account_id)
    notifications = await conn.fetch(
        """SELECT period, threshold_cents, estimate_cents, notified_at FROM spend_alert_notifications
            WHERE account_id = $1 ORDER BY notified_at DESC, threshold_cents DESC LIMIT $2""",
        account_id, NOTIFICATIONS_SHOWN)
    deliveries: dict[tuple[str, int], list[AlertDeliveryOut]] = {}
    for d in await conn.fetch(
            """SELECT * FROM spend_alert_deliveries
                WHERE account_id = $1 AND (period, threshold_cents) IN
                      (SELECT * FROM unnest($2::text[], $3::bigint[]))
                ORDER BY channel""",
            account_id, [n["period"] for n in notifications], [n["threshold_cents"] for n in notifications]):
        deliveries.setdefault((d["period"], d["threshold_cents"]), []).append(AlertDeliveryOut(
            channel=d["channel"], target=d["target"], state=d["state"], attempts=d["attempts"],
            last_error=d["last_error"], delivered_at=d["delivered_at"]))
    return SpendAlertsOut(
        thresholds_cents=thresholds,
        webhook_url=channels["webhook_url"] if channels else None,
        webhook_secret=channels["webhook_secret"] if channels else None,
        email=channels["email"] if channels else None,
        notifications=[AlertNotificationOut(
            period=n["period"], threshold_cents=n["threshold_cents"], estimate_cents=n["estimate_cents"],
            notified_at=n["notified_at"], deliveries=deliveries.get((n["period"], n["threshold_cents"]), []))
            for n in notifications])


@routes.get("/cloud/billing/alerts")
@documented("The account's spend alerts: thresholds, where they are sent, the latest notifications and their "
            "deliveries", auth="customer", response=SpendAlertsOut, tags=TAGS)
async def get_alerts(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    out = await _alerts_out(request.app[POOL], customer.account_id)
    return web.json_response(out.model_dump(mode="json"))


@routes.put("/cloud/billing/alerts")
@documented("Replace the spend alerts: thresholds (cents; each notifies once per period), the webhook URL and "
            "the email address (a field left out is cleared)", auth="customer", request=SpendAlerts,
            response=SpendAlertsOut, tags=TAGS)
async def put_alerts(request: web.Request) -> web.Response:
    customer = await require_customer(request)
    customer.require_writable()
    settings = request.app[SETTINGS]
    body = await parse(request, SpendAlerts)
    if any(t <= 0 or t > 10**12 for t in body.thresholds_cents):
        raise ApiError(400, "thresholds_cents must be positive cents, at most 10^12")
    if body.webhook_url is not None:
        try:
            check_webhook_url(body.webhook_url, allow_private=settings.alert_webhook_allow_private)
        except ValueError as err:
            raise ApiError(400, str(err)) from None
    if body.email is not None and not settings.smtp_host:
        raise ApiError(400, "email alerts are not available on this platform (no SMTP server is configured)")
    thresholds = sorted(set(body.thresholds_cents))
    account_id = customer.account_id
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM spend_alerts WHERE account_id = $1", account_id)
        await conn.executemany("INSERT INTO spend_alerts (account_id, threshold_cents) VALUES ($1, $2)",
                               [(account_id, t) for t in thresholds])
        old = await conn.fetchval(
            "SELECT webhook_secret FROM spend_alert_channels WHERE account_id = $1 FOR UPDATE", account_id)
        secret = None
        if body.webhook_url is not None:
            secret = old if old and not body.rotate_webhook_secret else "whsec_" + secrets.token_urlsafe(24)
        await conn.execute(
            """INSERT INTO spend_alert_channels (account_id, webhook_url, webhook_secret, email)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (account_id) DO UPDATE SET webhook_url = $2, webhook_secret = $3, email = $4,
                                                      updated_at = now()""",
            account_id, body.webhook_url, secret, body.email)
        out = await _alerts_out(conn, account_id)
    return web.json_response(out.model_dump(mode="json"))
