"""Typed keys for everything the application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import stripe
from aiohttp import web
from temporalio.client import Client

from tcloud.settings import Settings

if TYPE_CHECKING:
    from api.cloud_grpc import CloudApiServer

SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
STRIPE = web.AppKey("stripe", stripe.StripeClient)
# The Cloud Ops gRPC server beside the HTTP one, when the application runs it (api/cloud_grpc.py).
CLOUD_API: web.AppKey[CloudApiServer] = web.AppKey("cloud_api")
