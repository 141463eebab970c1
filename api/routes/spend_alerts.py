"""Routes: spend alerts. An account's thresholds, where alerts go (a signed webhook, an email address) and
the latest notifications with the state of each delivery."""

from __future__ import annotations

import secrets

from aiohttp import web

from api.appkeys import POOL, SETTINGS
from api.auth import require_billing
from api.billing_models import AlertDeliveryOut, AlertNotificationOut, SpendAlerts, SpendAlertsOut
from api.bodies import parse
from api.errors import ApiError
from api.openapi import documented
from tcloud.adapters.webhook_targets import check_webhook_url
from tcloud.store import spend_alerts as store

routes = web.RouteTableDef()
TAGS = ("billing",)
NOTIFICATIONS_SHOWN = 50


def _alerts_out(view: store.SpendAlertsView) -> SpendAlertsOut:
    deliveries: dict[tuple[str, int], list[AlertDeliveryOut]] = {}
    for d in view.deliveries:
        deliveries.setdefault((d["period"], d["threshold_cents"]), []).append(AlertDeliveryOut(
            channel=d["channel"], target=d["target"], state=d["state"], attempts=d["attempts"],
            last_error=d["last_error"], delivered_at=d["delivered_at"]))
    channels = view.channels
    return SpendAlertsOut(
        thresholds_cents=view.thresholds_cents,
        webhook_url=channels["webhook_url"] if channels else None,
        webhook_secret=channels["webhook_secret"] if channels else None,
        email=channels["email"] if channels else None,
        notifications=[AlertNotificationOut(
            period=n["period"], threshold_cents=n["threshold_cents"], estimate_cents=n["estimate_cents"],
            notified_at=n["notified_at"], deliveries=deliveries.get((n["period"], n["threshold_cents"]), []))
            for n in view.notifications])


@routes.get("/cloud/billing/alerts")
@documented("The account's spend alerts: thresholds, where they are sent, the latest notifications and their "
            "deliveries", auth="customer", response=SpendAlertsOut, tags=TAGS)
async def get_alerts(request: web.Request) -> web.Response:
    customer = await require_billing(request)
    out = _alerts_out(await store.spend_alerts_view(request.app[POOL], customer.account_id,
                                                    notifications=NOTIFICATIONS_SHOWN))
    return web.json_response(out.model_dump(mode="json"))


@routes.put("/cloud/billing/alerts")
@documented("Replace the spend alerts: thresholds (cents; each notifies once per period), the webhook URL and "
            "the email address (a field left out is cleared)", auth="customer", request=SpendAlerts,
            response=SpendAlertsOut, tags=TAGS)
async def put_alerts(request: web.Request) -> web.Response:
    customer = await require_billing(request)
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
    view = await store.replace_spend_alerts(
        request.app[POOL], customer.account_id, thresholds_cents=sorted(set(body.thresholds_cents)),
        webhook_url=body.webhook_url, email=body.email, rotate_webhook_secret=body.rotate_webhook_secret,
        new_webhook_secret="whsec_" + secrets.token_urlsafe(24), notifications=NOTIFICATIONS_SHOWN)
    return web.json_response(_alerts_out(view).model_dump(mode="json"))
