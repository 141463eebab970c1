"""The daily backup workflow (``backup/...``) and the restore workflow (``restore/<backup id>``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.backup import (
        BackupActivities,
        DumpInput,
        PruneInput,
        PruneResult,
        RecordInput,
        RestorePlan,
        RestoreRequest,
        RestoreResult,
    )
    from tcloud.adapters.backups import catalog

SHORT = timedelta(minutes=2)
DUMP_TIMEOUT = timedelta(hours=6)
HEARTBEAT = timedelta(seconds=30)  # pg_dump output and the restore ticker beat far more often
DUMP_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10))


@dataclass
class BackupInput:
    backup_id: str | None = None  # default: the workflow's start time, YYYYMMDDTHHMMSSZ
    keep_days: int | None = None  # default: settings.backup_retention_days


@dataclass
class BackupOutput:
    manifest: catalog.Manifest
    pruned: PruneResult


@workflow.defn(name="BackupWorkflow")
class BackupWorkflow:
    """Dump every configured database to the store, record the backup, then apply retention."""

    @workflow.run
    async def run(self, params: BackupInput) -> BackupOutput:
        created_at = workflow.now()
        backup_id = params.backup_id or catalog.backup_id_at(created_at)
        if not catalog.is_backup_id(backup_id):
            raise ApplicationError(f"invalid backup id {backup_id!r}: want YYYYMMDDTHHMMSSZ", non_retryable=True)
        targets = await workflow.execute_activity_method(BackupActivities.backup_targets, start_to_close_timeout=SHORT)
        dumps: list[catalog.DumpEntry] = []
        for database in targets.databases:
            dumps.append(await workflow.execute_activity_method(
                BackupActivities.dump_database, DumpInput(backup_id, database, created_at),
                start_to_close_timeout=DUMP_TIMEOUT, heartbeat_timeout=HEARTBEAT, retry_policy=DUMP_RETRY))
        manifest = await workflow.execute_activity_method(
            BackupActivities.record_backup,
            RecordInput(backup_id, created_at, workflow.info().workflow_id, dumps),
            start_to_close_timeout=SHORT)
        pruned = await workflow.execute_activity_method(
            BackupActivities.prune_backups, PruneInput(params.keep_days),
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=HEARTBEAT)
        return BackupOutput(manifest, pruned)


@dataclass
class RestoreStatus:
    """What the restore is doing; ``plan`` is set once the backup and the target were inspected."""

    phase: str = "inspecting"
    plan: RestorePlan | None = None
    refused: str | None = None
    started_at: datetime | None = None


@workflow.defn(name="RestoreWorkflow")
class RestoreWorkflow:
    """Check the backup, refuse a non-empty target unless forced, download, verify sha256, pg_restore."""

    def __init__(self) -> None:
        self._status = RestoreStatus()

    @workflow.query
    def status(self) -> RestoreStatus:
        return self._status

    @workflow.run
    async def run(self, params: RestoreRequest) -> RestoreResult:
        self._status.started_at = workflow.now()
        try:
            return await self._restore(params)
        except ActivityError as err:
            # Surface the activity's own refusal (not found, corrupted, ...) as this workflow's failure.
            if isinstance(err.cause, ApplicationError):
                self._status.phase = "failed"
                self._status.refused = err.cause.message
                raise ApplicationError(err.cause.message, type=err.cause.type, non_retryable=True) from err
            raise

    async def _restore(self, params: RestoreRequest) -> RestoreResult:
        plan = await workflow.execute_activity_method(
            BackupActivities.inspect_restore, params, start_to_close_timeout=SHORT)
        self._status.plan = plan
        if plan.overwrites and not params.force:
            tables = ", ".join(f"{t.table} ({t.rows} rows)" for t in plan.overwrites)
            self._status.phase = "refused"
            self._status.refused = (f"target {plan.target} is not empty: {tables}. "
                                    "Restore with force (deploy.sh restore --force) to overwrite it.")
            raise ApplicationError(self._status.refused, type="TargetNotEmpty", non_retryable=True)
        self._status.phase = "restoring"
        result = await workflow.execute_activity_method(
            BackupActivities.restore_database, plan, start_to_close_timeout=DUMP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT, retry_policy=RetryPolicy(maximum_attempts=3))
        self._status.phase = "done"
        return result
