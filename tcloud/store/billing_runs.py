"""The ``billing_runs`` table: each month's billing run as the run last reported it (status, phase, counts)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tcloud.store._connections import Conn


async def start_billing_run(conn: Conn, period: str, workflow_id: str) -> None:
    """Record that the period's run has (re)started: running, phase 'starting', no counts yet."""
    await conn.execute(
        """INSERT INTO billing_runs (period, workflow_id, status, phase)
           VALUES ($1, $2, 'running', 'starting')
           ON CONFLICT (period) DO UPDATE
              SET workflow_id = $2, status = 'running', phase = 'starting', missing_hours = -1, counts = '{}',
                  started_at = now(), updated_at = now()""",
        period, workflow_id)


async def report_billing_run(conn: Conn, period: str, workflow_id: str, *, status: str, phase: str,
                             missing_hours: int, counts: Mapping[str, int]) -> None:
    """Record what the run reports of itself (creating the row if the run was started without the API)."""
    await conn.execute(
        """INSERT INTO billing_runs (period, workflow_id, status, phase, missing_hours, counts)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)
           ON CONFLICT (period) DO UPDATE
              SET workflow_id = $2, status = $3, phase = $4, missing_hours = $5, counts = $6::jsonb,
                  updated_at = now()""",
        period, workflow_id, status, phase, missing_hours, json.dumps(dict(counts)))


@dataclass(frozen=True)
class BillingRunRow:
    period: str
    workflow_id: str
    status: str
    phase: str
    missing_hours: int
    counts: dict[str, int]
    started_at: datetime
    updated_at: datetime


async def billing_run(conn: Conn, period: str) -> BillingRunRow | None:
    """The period's run as last reported, or None when the period never had a run."""
    row = await conn.fetchrow("SELECT * FROM billing_runs WHERE period = $1", period)
    if row is None:
        return None
    return BillingRunRow(row["period"], row["workflow_id"], row["status"], row["phase"], row["missing_hours"],
                         json.loads(row["counts"]), row["started_at"], row["updated_at"])
