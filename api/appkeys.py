"""Typed keys for everything the application holds."""

from __future__ import annotations

import asyncpg
import stripe
from aiohttp import web
from temporalio.client import Client

from tcloud.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
STRIPE = web.AppKey("stripe", stripe.StripeClient)
