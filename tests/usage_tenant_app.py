"""The tenant's application in the metering tests: a workflow with activities, a retry, local activities, a
timer and signals. Kept apart from the test helpers so the workflow sandbox imports nothing else."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn
async def greet(name: str) -> str:
    return f"hello {name}"


@activity.defn
async def flaky(name: str) -> str:
    """Fails its first attempt: one activity retry, which Cloud bills as an action."""
    if activity.info().attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return name


@dataclass
class OrderInput:
    hold: bool  # stay open after the signal (active storage) until released


@workflow.defn
class TenantOrderWorkflow:
    def __init__(self) -> None:
        self.paid = False
        self.released = False

    @workflow.signal
    def pay(self) -> None:
        self.paid = True

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self, params: OrderInput) -> str:
        timeout = timedelta(seconds=10)
        await workflow.execute_activity(greet, "a", start_to_close_timeout=timeout)
        await workflow.execute_activity(greet, "b", start_to_close_timeout=timeout)
        await workflow.execute_activity(flaky, "c", start_to_close_timeout=timeout,
                                        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))
        await asyncio.gather(workflow.execute_local_activity(greet, "la1", start_to_close_timeout=timeout),
                             workflow.execute_local_activity(greet, "la2", start_to_close_timeout=timeout))
        await workflow.sleep(timedelta(milliseconds=50))
        await workflow.wait_condition(lambda: self.paid)
        if params.hold:
            await workflow.wait_condition(lambda: self.released)
        return "done"
