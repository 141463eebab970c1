"""Sending a spend-alert notification: a signed webhook POST or an email.

Delivery is at least once: a crash after the receiver answered and before the delivery is recorded sends it
again. Every send of one notification carries the same event id (the ``id`` field, the ``Tcloud-Event-Id``
header, the email's ``Message-ID``), so a receiver drops repeats by that id.

Webhook signature, the scheme Stripe uses: ``Tcloud-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with the account's webhook secret>``. Receivers recompute it over the raw body and refuse
a timestamp older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib

from tcloud.adapters.webhook_targets import PublicOnlyResolver, TargetRefused, check_address
from tcloud.domain.billing_period import first_day
from tcloud.domain.pricing import dollars, price_book_for
from tcloud.settings import Settings

EVENT_TYPE = "spend_alert.threshold_reached"
USER_AGENT = "tcloud-spend-alerts/1"
WEBHOOK_TIMEOUT_SECONDS = 10.0


class DeliveryFailed(Exception):
    """This attempt failed; another may succeed (the receiver was down or answered with an error)."""


@dataclass(frozen=True)
class Notification:
    account_id: str
    period: str
    threshold_cents: int
    estimate_cents: int
    notified_at: int  # unix seconds

    @property
    def event_id(self) -> str:
        return f"spend_alert.{self.account_id}.{self.period}.{self.threshold_cents}"


def event(n: Notification) -> dict[str, object]:
    """The JSON body of the webhook, the same for every attempt."""
    return {
        "id": n.event_id,
        "type": EVENT_TYPE,
        "created": n.notified_at,
        "account_id": n.account_id,
        "period": n.period,
        "currency": price_book_for(first_day(n.period)).currency,
        "threshold_cents": n.threshold_cents,
        "estimate_cents": n.estimate_cents,
        "threshold": dollars(n.threshold_cents),
        "estimate": dollars(n.estimate_cents),
    }


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Tcloud-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def send_webhook(n: Notification, *, url: str, secret: str, allow_private: bool) -> int:
    """POST the event to ``url``; a 2xx answer delivers it.

    Returns:
        The HTTP status of the answer.

    Raises:
        TargetRefused: the URL reaches an address that is not public (and that is not allowed).
        DeliveryFailed: no answer, or an answer other than 2xx (redirects are not followed).
    """
    check_address(urlsplit(url).hostname or "", allow_private=allow_private)
    body = json.dumps(event(n), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Tcloud-Event-Id": n.event_id,
               "Tcloud-Signature": sign(body, secret, int(time.time()))}
    connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(allow_private=allow_private), force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session, session.post(
                url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)) as resp:
            await resp.content.read(4096)
            if not 200 <= resp.status < 300:
                raise DeliveryFailed(f"{url} answered {resp.status}")
            return resp.status
    except aiohttp.ClientConnectorError as err:
        cause = getattr(err, "os_error", None)
        if isinstance(cause, TargetRefused):
            raise cause from None
        raise DeliveryFailed(f"{url}: {err}") from None
    except (aiohttp.ClientError, TimeoutError) as err:
        raise DeliveryFailed(f"{url}: {type(err).__name__} {err}") from None


def email_message(n: Notification, *, to: str, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Spend alert: {n.account_id} reached ${dollars(n.threshold_cents)} in {n.period}"
    msg["Date"] = formatdate(n.notified_at, usegmt=True)
    msg["Message-ID"] = f"<{n.event_id}@tcloud>"
    msg.set_content(
        f"Account {n.account_id} reached its spend alert of ${dollars(n.threshold_cents)} for {n.period}.\n"
        f"Month-to-date estimate when it was checked: ${dollars(n.estimate_cents)}.\n\n"
        "The estimate is priced like the invoice, over the usage collected so far; "
        "see GET /cloud/billing/upcoming or the portal for the current figure.\n")
    return msg


async def send_email(n: Notification, *, to: str, settings: Settings) -> None:
    """Hand the alert to the configured SMTP server.

    Raises:
        DeliveryFailed: SMTP is not configured, unreachable, or refused the message.
    """
    if not settings.smtp_host:
        raise DeliveryFailed("email is not configured on this platform (TCLOUD_SMTP_HOST)")
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            email_message(n, to=to, sender=settings.alert_email_from), hostname=settings.smtp_host,
            port=settings.smtp_port, username=settings.smtp_username, password=password,
            use_tls=settings.smtp_security == "tls", start_tls=settings.smtp_security == "starttls", timeout=30)
    except (aiosmtplib.SMTPException, OSError) as err:
        raise DeliveryFailed(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(err).__name__} {err}") from None
