"""What the operator console shows at a glance: accounts with month-to-date amounts, the platform's own cost."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from api.appkeys import POOL, SETTINGS
from api.auth import require_operator
from api.openapi import documented
from tcloud.domain.pricing import BYTES_PER_GB, line_cents, price_book_for, tiered_actions_amount
from tcloud.services.invoicing import price_account_month
from tcloud.store import platform as platform_store

routes = web.RouteTableDef()
MAX_ACCOUNTS = 200

OVERVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "temporalUiUrl": {"type": "string"}, "controlNamespace": {"type": "string"}, "period": {"type": "string"},
        "platform": {"type": "object", "description": "the control namespace's own usage this month, at list price"},
        "accounts": {"type": "array", "items": {"type": "object"}},
    },
}


@routes.get("/admin/overview")
@documented("Accounts with their month-to-date amounts, and the platform's own action cost", auth="operator",
            response=OVERVIEW_SCHEMA, tags=("operator",))
async def overview(request: web.Request) -> web.Response:
    require_operator(request)
    settings = request.app[SETTINGS]
    pool = request.app[POOL]
    now = datetime.now(UTC)
    period = now.strftime("%Y-%m")
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    rows = await platform_store.first_accounts(pool, MAX_ACCOUNTS)
    accounts = []
    for row in rows:
        month = await price_account_month(pool, row["id"], period, until=now)
        accounts.append({"id": row["id"], "name": row["name"], "plan": row["plan"], "status": row["status"],
                         "monthToDateCents": month.priced.total_cents})

    usage = await platform_store.namespace_usage_since(pool, settings.control_namespace, start)
    book = price_book_for(start.date())
    actions = usage.get("actions", Decimal(0))
    active_gbh = usage.get("active_storage", Decimal(0)) / BYTES_PER_GB
    retained_gbh = usage.get("retained_storage", Decimal(0)) / BYTES_PER_GB
    list_price = (tiered_actions_amount(book.action_tiers, actions) + active_gbh * book.active_per_gb_hour
                  + retained_gbh * book.retained_per_gb_hour)
    return web.json_response({
        "temporalUiUrl": settings.temporal_ui_url.rstrip("/"),
        "controlNamespace": settings.control_namespace,
        "period": period,
        "platform": {"actions": int(actions), "activeGbHours": format(active_gbh, "f"),
                     "retainedGbHours": format(retained_gbh, "f"), "listPriceCents": line_cents(list_price)},
        "accounts": accounts,
    })
