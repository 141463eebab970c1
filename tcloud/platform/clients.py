"""Factories for the outside systems the activities talk to."""

from __future__ import annotations

import aiohttp
import stripe
from prometheus_api_client import PrometheusConnect

from tcloud.settings import Settings


def stripe_client(settings: Settings, session: aiohttp.ClientSession) -> stripe.StripeClient:
    """A Stripe client for localstripe or real Stripe over ``session`` (the caller closes it).

    Retries are Temporal's job, not the SDK's.
    """
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.AIOHTTPClient(session=session, timeout=30),
        max_network_retries=0,
    )


def prometheus_client(settings: Settings) -> PrometheusConnect:
    return PrometheusConnect(url=settings.prometheus_url, disable_ssl=True)
