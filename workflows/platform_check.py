"""A workflow that proves the worker reaches every dependency: `temporal workflow execute` it any time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.platform_check import CheckResult, PlatformCheckActivities


@dataclass
class PlatformCheckInput:
    components: list[str] = field(default_factory=lambda: ["postgres", "prometheus", "stripe"])


@dataclass
class PlatformCheckOutput:
    results: list[CheckResult]


@workflow.defn(name="PlatformCheckWorkflow")
class PlatformCheckWorkflow:
    @workflow.run
    async def run(self, params: PlatformCheckInput) -> PlatformCheckOutput:
        checks = {
            "postgres": PlatformCheckActivities.check_postgres,
            "prometheus": PlatformCheckActivities.check_prometheus,
            "stripe": PlatformCheckActivities.check_stripe,
        }
        results = []
        for name in params.components:
            results.append(
                await workflow.execute_activity_method(
                    checks[name], start_to_close_timeout=timedelta(seconds=10)
                )
            )
        return PlatformCheckOutput(results)
