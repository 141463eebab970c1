"""Routes: backups (operator only): list them, look at one, start one now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.appkeys import POOL, SETTINGS, TEMPORAL
from api.auth import require_operator
from api.bodies import parse
from api.errors import ApiError
from api.openapi import documented
from tcloud.adapters.backups import catalog
from tcloud.store import backups as backups_store
from workflows.backup import BackupInput, BackupWorkflow

routes = web.RouteTableDef()


class BackupDump(BaseModel):
    database: str
    object_key: str
    size_bytes: int
    sha256: str


class BackupOut(BaseModel):
    backup_id: str
    store: str
    created_at: datetime
    finished_at: datetime
    workflow_id: str
    deleted_at: datetime | None
    dumps: list[BackupDump]


class BackupList(BaseModel):
    backups: list[BackupOut]


class StartBackup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_days: int | None = Field(default=None, ge=1, le=3650,
                                  description="retention for this run; default TCLOUD_BACKUP_RETENTION_DAYS")


class BackupStarted(BaseModel):
    backup_id: str
    workflow_id: str


def _group(rows: list[Any]) -> list[BackupOut]:
    out: dict[str, BackupOut] = {}
    for r in rows:
        b = out.setdefault(r["backup_id"], BackupOut(
            backup_id=r["backup_id"], store=r["store"], created_at=r["created_at"], finished_at=r["finished_at"],
            workflow_id=r["workflow_id"], deleted_at=r["deleted_at"], dumps=[]))
        b.dumps.append(BackupDump(database=r["database"], object_key=r["object_key"], size_bytes=r["size_bytes"],
                                  sha256=r["sha256"]))
    return list(out.values())


@routes.get("/backups")
@documented("Backups recorded, newest first (pruned ones only with include_deleted=true)", auth="operator",
            response=BackupList, query={"include_deleted": "true to list pruned backups too"}, tags=("backups",))
async def list_backups(request: web.Request) -> web.Response:
    require_operator(request)
    flag = request.query.get("include_deleted", "false")
    if flag not in ("true", "false"):
        raise ApiError(400, "include_deleted must be true or false")
    rows = await backups_store.list_backup_dumps(request.app[POOL], include_deleted=flag == "true")
    return web.json_response(BackupList(backups=_group(rows)).model_dump(mode="json"))


@routes.get("/backups/{backup_id}")
@documented("One backup and the dump of each database in it", auth="operator", response=BackupOut,
            tags=("backups",))
async def get_backup(request: web.Request) -> web.Response:
    require_operator(request)
    backup_id = request.match_info["backup_id"]
    if not catalog.is_backup_id(backup_id):
        raise ApiError(400, "a backup id looks like 20261125T030000Z")
    rows = await backups_store.backup_dumps(request.app[POOL], backup_id)
    if not rows:
        raise ApiError(404, f"no backup {backup_id}")
    return web.json_response(_group(rows)[0].model_dump(mode="json"))


@routes.post("/backups")
@documented("Start a backup now (the same workflow as the daily schedule)", auth="operator", request=StartBackup,
            response=BackupStarted, status=202, tags=("backups",))
async def start_backup(request: web.Request) -> web.Response:
    require_operator(request)
    body = await parse(request, StartBackup) if request.can_read_body else StartBackup()
    backup_id = catalog.backup_id_at(datetime.now(UTC))
    workflow_id = f"backup/{backup_id}"
    await request.app[TEMPORAL].start_workflow(
        BackupWorkflow.run, BackupInput(backup_id=backup_id, keep_days=body.keep_days), id=workflow_id,
        task_queue=request.app[SETTINGS].task_queue)
    return web.json_response(BackupStarted(backup_id=backup_id, workflow_id=workflow_id).model_dump(), status=202)
