"""The operator's re-collection commands from the README, run with the real temporal CLI."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from datetime import UTC, datetime

import asyncpg
from temporalio.client import Client

from launcher import procs
from tcloud.domain.metering import HOUR, floor_hour, hour_id
from tcloud.settings import Settings
from workflows.usage import UsageCollectHourWorkflow, UsageHourlyWorkflow


def _temporal(settings: Settings, *args: str) -> str:
    cmd = [procs.binary("temporal"), *args, "--address", settings.temporal_address,
           "--namespace", settings.control_namespace]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


async def test_operator_recollects_a_range_and_an_hour_with_the_cli(
        worker: None, pool: asyncpg.Pool, temporal_client: Client, settings: Settings) -> None:
    through = floor_hour(datetime.now(UTC))
    first, last = through - 6 * HOUR, through - 4 * HOUR
    run_id = f"usage/recollect-{secrets.token_hex(3)}"
    # Every missing hour from `from_hour` up to `through` (exclusive), for both collectors.
    await asyncio.to_thread(
        _temporal, settings, "workflow", "start", "--task-queue", settings.task_queue,
        "--type", "UsageHourlyWorkflow", "--workflow-id", run_id,
        "--input", json.dumps({"from_hour": first.isoformat(), "through": last.isoformat()}))
    result = await temporal_client.get_workflow_handle_for(UsageHourlyWorkflow.run, run_id).result()
    assert result.collected == {"actions": [first, first + HOUR], "storage": [first, first + HOUR]}

    # One collector, one hour: the workflow id names it; an hour already collected is left as it was.
    hour = first
    out = await asyncio.to_thread(
        _temporal, settings, "workflow", "execute", "--task-queue", settings.task_queue,
        "--type", "UsageCollectHourWorkflow", "--workflow-id", f"usage/actions/{hour_id(hour)}",
        "--input", json.dumps({"collector": "actions", "hour": hour.isoformat()}), "--output", "json")
    assert json.loads(out)["result"]["written"] is False
    again = await temporal_client.get_workflow_handle_for(UsageCollectHourWorkflow.run,
                                                          f"usage/actions/{hour_id(hour)}").result()
    assert again.written is False
    assert await pool.fetchval("SELECT count(*) FROM usage_collected_hours WHERE hour >= $1 AND hour < $2",
                               first, last) == 4
