"""``deploy.sh restore [BACKUP_ID|latest] [--database NAME | --temporal] [--force] [--offline] [--list]``.

Starts the restore workflow (``restore/<backup id>``, visible in the Temporal UI) on the running worker,
prints what it will overwrite, and waits for it. A target that holds rows is refused unless ``--force``.
``--offline`` does the same steps in this process without Temporal: for Temporal's own databases (restore
them with the Temporal server stopped) or when Temporal is gone. ``--temporal`` does that for every one of
Temporal's databases in the backup (``TCLOUD_BACKUP_EXTRA_DSNS``): it stops the local Temporal server, restores
them offline and starts the platform again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import quote

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.backup import PLATFORM_DATABASE, RestoreRequest, RestoreResult, target_label
from launcher.cli import Layout, read_env_file, stop_components, up
from launcher.procs import exit_without_finalizing
from tcloud.adapters.backups import catalog, pgtools, restoring
from tcloud.adapters.backups.factory import open_store
from tcloud.platform.temporal import connect
from tcloud.settings import Settings
from workflows.backup import RestoreStatus, RestoreWorkflow


def workflow_id(backup_id: str, database: str) -> str:
    return f"restore/{backup_id}" if database == PLATFORM_DATABASE else f"restore/{backup_id}/{database}"


async def resolve(settings: Settings, wanted: str) -> str:
    """``latest`` → the newest complete backup in the store; an explicit id is checked for form only."""
    if wanted != "latest":
        if not catalog.is_backup_id(wanted):
            raise SystemExit(f"restore: {wanted!r} is not a backup id (like 20261125T030000Z) or 'latest'")
        return wanted
    complete, _ = await catalog.backup_ids(await open_store(settings))
    if not complete:
        raise SystemExit(f"restore: no complete backup in the {settings.backup_store} store")
    return complete[-1]


async def list_backups(settings: Settings) -> None:
    manifests = await catalog.list_manifests(await open_store(settings))
    if not manifests:
        print(f"no backups in the {settings.backup_store} store")
    for m in manifests:
        dbs = ", ".join(f"{d.database} {d.size} B" for d in m.dumps)
        print(f"{m.backup_id}  {m.created_at.isoformat()}  {dbs}")


async def _print_plan(handle: WorkflowHandle, done: asyncio.Future[RestoreResult]) -> None:
    """Show the plan as soon as the workflow has inspected backup and target (a closed workflow answers too)."""
    while True:
        finished = done.done()
        try:
            status: RestoreStatus = await handle.query(RestoreWorkflow.status)
        except RPCError:
            status = RestoreStatus()
        if status.plan is not None:
            plan = status.plan
            print(f"backup {plan.backup_id}: {plan.dump.key} ({plan.dump.size} bytes, sha256 {plan.dump.sha256})")
            if plan.overwrites:
                print(f"it overwrites {plan.target}, which holds:")
                for t in plan.overwrites:
                    print(f"  {t.table}: {t.rows} rows")
            else:
                print(f"target {plan.target} is empty")
            return
        if finished:
            return
        await asyncio.sleep(0.3)


async def restore(settings: Settings, backup_id: str, database: str, force: bool) -> int:
    client = await connect(settings)
    wid = workflow_id(backup_id, database)
    handle = await client.start_workflow(RestoreWorkflow.run, RestoreRequest(backup_id, database, force), id=wid,
                                         task_queue=settings.task_queue)
    print(f"restore workflow {wid}: {settings.temporal_ui_url}/namespaces/{settings.control_namespace}"
          f"/workflows/{quote(wid, safe='')}")
    done = asyncio.ensure_future(handle.result())
    await _print_plan(handle, done)
    try:
        result = await done
    except WorkflowFailureError as err:
        print(f"restore refused or failed: {failure_message(err)}", file=sys.stderr)
        return 1
    print(f"restored {result.bytes_restored} bytes of backup {result.backup_id} into {result.target}")
    return 0


async def restore_offline(settings: Settings, backup_id: str, database: str, force: bool) -> int:
    """The restore workflow's steps run here, with no Temporal: same checks, same refusal."""
    store = await open_store(settings)
    manifest = await catalog.read_manifest(store, backup_id)
    dump = manifest.dump(database) if manifest else None
    if dump is None:
        print(f"restore refused: no dump of {database!r} in a complete backup {backup_id}", file=sys.stderr)
        return 1
    if database == PLATFORM_DATABASE:
        dsn = settings.postgres_dsn.get_secret_value()
    elif database in settings.backup_extra_dsns:
        dsn = settings.backup_extra_dsns[database].get_secret_value()
    else:
        print(f"restore refused: no DSN configured for {database!r} (TCLOUD_BACKUP_EXTRA_DSNS)", file=sys.stderr)
        return 1
    print(f"backup {backup_id}: {dump.key} ({dump.size} bytes, sha256 {dump.sha256})")
    overwrites = await pgtools.non_empty_tables(dsn)
    for t in overwrites:
        print(f"  {t.table}: {t.rows} rows")
    if overwrites and not force:
        print(f"restore refused: target {target_label(dsn)} is not empty; use --force to overwrite it", file=sys.stderr)
        return 1
    try:
        size = await restoring.restore_dump(store, backup_id, dump, dsn)
    except (restoring.BackupCorruptedError, pgtools.PgToolError) as err:
        print(f"restore refused or failed: {err}", file=sys.stderr)
        return 1
    print(f"restored {size} bytes of backup {backup_id} into {target_label(dsn)}")
    return 0


def failure_message(err: BaseException) -> str:
    """The message of the innermost application error behind a workflow failure."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__
    return str(err)


def load_settings() -> Settings:
    """Settings as ``deploy.sh local`` generated them (``.state/tcloud.env``), TCLOUD_* variables winning."""
    state = Path(os.environ.get("TCLOUD_STATE_DIR", ".state"))
    for key, value in read_env_file(state / "tcloud.env").items():
        os.environ.setdefault(key, value)
    return Settings()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.sh restore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backup", nargs="?", default="latest", help="backup id (YYYYMMDDTHHMMSSZ) or 'latest'")
    parser.add_argument("--database", default=PLATFORM_DATABASE,
                        help="which database of the backup (default: platform)")
    parser.add_argument("--force", action="store_true", help="overwrite a target database that holds rows")
    parser.add_argument("--offline", action="store_true",
                        help="restore from this process without Temporal (Temporal's own databases, disasters)")
    parser.add_argument("--list", action="store_true", help="list the backups in the store and exit")
    parser.add_argument("--temporal", action="store_true",
                        help="restore Temporal's own databases: stops the local Temporal server, restores each one "
                             "offline, then starts the platform again")
    args = parser.parse_args(argv)
    settings = load_settings()

    async def _main() -> int:
        if args.list:
            await list_backups(settings)
            return 0
        backup_id = await resolve(settings, args.backup)
        if args.temporal:
            return await restore_temporal(settings, backup_id, args.force)
        run = restore_offline if args.offline else restore
        return await run(settings, backup_id, args.database, args.force)

    if args.temporal:
        layout = Layout(settings.state_dir.resolve())
        stop_components(layout, ("temporal-ui", "temporal"))
        code = asyncio.run(_main())
        print("starting the platform again")
        up(layout)
        return code
    return asyncio.run(_main())


async def restore_temporal(settings: Settings, backup_id: str, force: bool) -> int:
    """Every database of ``TCLOUD_BACKUP_EXTRA_DSNS`` restored offline from ``backup_id`` (Temporal is stopped)."""
    if not settings.backup_extra_dsns:
        print("restore refused: TCLOUD_BACKUP_EXTRA_DSNS names none of Temporal's databases", file=sys.stderr)
        return 1
    for database in settings.backup_extra_dsns:
        print(f"== {database}")
        code = await restore_offline(settings, backup_id, database, force)
        if code:
            return code
    return 0


if __name__ == "__main__":
    exit_without_finalizing(main())
