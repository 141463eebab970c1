"""The namespace listing's JSON written directly (``api.namespace_json.namespaces_json``) is what protobuf's JSON
mapping makes of the ``GetNamespacesResponse`` the gRPC door answers: for every state, with and without tags and
search attributes, on rows made up here and on real rows read through both doors of the API. Byte for byte without
map fields; with them, the same fields in the same order but for the keys of the maps (protobuf's hash order)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.json_format import MessageToDict
from temporalio.api.cloud.cloudservice.v1 import GetNamespacesRequest, GetNamespacesResponse
from temporalio.client import CloudOperationsClient

from api.app import create_app
from api.appkeys import CLOUD_API
from api.namespace_json import RENDERED_COLUMNS, namespace_message, namespaces_json
from tcloud.domain import search_attributes
from tcloud.domain.states import NamespaceState
from tcloud.settings import Settings
from tcloud.store import namespaces as namespace_store
from tests.accounts_fixtures import TestAccount, create_account

STATES: tuple[str, ...] = get_args(NamespaceState)
# Whole seconds, milliseconds, microseconds: the mapping writes 0, 3 or 6 decimals.
MOMENTS = (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
           datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))


MAP_FIELDS = frozenset({"tags", "customSearchAttributes", "searchAttributes"})


class _Object(list[tuple[str, Any]]):
    """A JSON object as its pairs, in order."""


def _canonical(value: Any, key: str = "") -> Any:
    """JSON read with its objects' key order kept, but for the keys of map fields (sorted)."""
    if isinstance(value, _Object):
        pairs = [(k, _canonical(v, k)) for k, v in value]
        return ("object", sorted(pairs) if key in MAP_FIELDS else pairs)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def assert_same(fast: bytes, slow: bytes) -> None:
    assert _canonical(json.loads(fast, object_pairs_hook=_Object)) == \
        _canonical(json.loads(slow, object_pairs_hook=_Object))
    if not any(f'"{field}"'.encode() in slow for field in MAP_FIELDS):
        assert fast == slow


def protobuf_json(rows: list[dict[str, Any]], next_page_token: str, settings: Settings) -> bytes:
    """What ``message_response`` makes of the messages (the other routes' rendering)."""
    answer = GetNamespacesResponse(namespaces=[namespace_message(r, settings) for r in rows],
                                   next_page_token=next_page_token)
    return json.dumps(MessageToDict(answer)).encode()


def made_up_rows() -> list[dict[str, Any]]:
    """A row per state and moment, with and without an operation, tags and search attributes (as asyncpg gives a
    jsonb column, and as a dict), in and out of UTC."""
    rows = []
    for i, state in enumerate(STATES):
        for j, moment in enumerate(MOMENTS):
            rows.append({
                "namespace": f"{state}-{j}.acme", "name": f"{state}-{j}", "resource_version": 10 ** j + i,
                "retention_days": 1 + (i * 7 + j) % 90, "state": state,
                "async_operation_id": None if j == 0 else "" if j == 1 else f"op-{state}-\u00e9\"{j}",
                "created_at": moment if j != 2 else moment.astimezone(timezone(timedelta(hours=-5))),
                "updated_at": (moment + timedelta(hours=i)).replace(tzinfo=None),  # naive: UTC to both
                "tags": "{}" if j == 0 else json.dumps({"team": state, "cost-center": f"c{j}"}) if j == 1 else
                        {"z.z": "\u00e9", "a@b": "1", "m_x": "-"},
                "search_attributes": "{}" if j != 1 else json.dumps({"CustomerId": "Keyword", "Total": "Double"})
                                     if i % 2 else {k: k for k in search_attributes.TYPES},
            })
    return rows


@pytest.mark.parametrize("settings", [
    Settings(),
    Settings(cloud_region="eu-west-1", temporal_public_address="", customer_ui_url="https://ui.example/x/"),
], ids=["defaults", "other-settings"])
@pytest.mark.parametrize("token", ["", "failed-2.acme"])
def test_every_state_renders_as_protobuf_does(settings: Settings, token: str) -> None:
    rows = made_up_rows()
    assert_same(namespaces_json(rows, token, settings), protobuf_json(rows, token, settings))
    for row in rows:
        assert_same(namespaces_json([row], "", settings), protobuf_json([row], "", settings))


def test_an_empty_page_is_an_empty_object() -> None:
    assert namespaces_json([], "", Settings()) == protobuf_json([], "", Settings()) == b"{}"


def test_a_row_with_a_column_it_does_not_know_goes_through_the_message() -> None:
    rows = [{**row, "colour": "blue"} for row in made_up_rows()]
    assert namespaces_json(rows, "x", Settings()) == protobuf_json(rows, "x", Settings())


# --- Through both doors, on real rows --------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def doors(settings: Settings) -> AsyncIterator[TestClient]:
    """The API application serving both doors: HTTP through this client, gRPC on ``app[CLOUD_API].port``."""
    app = create_app(settings.model_copy(update={"cloud_api_port": 0}), cloud_api=True)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def account(doors: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool) -> TestAccount:
    """An account with a namespace in every state, written directly (the listing reads only the rows)."""
    made = await create_account(doors, operator_headers, prefix="nsjson")
    for i, state in enumerate(STATES):
        await pool.execute(
            """INSERT INTO namespaces (namespace, name, account_id, state, retention_days, resource_version,
                                       async_operation_id, created_at, updated_at, tags, search_attributes)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb)""",
            f"{state}.{made.id}", state, made.id, state, 1 + i * 11, 1 + i * 1000,
            None if i % 2 else f"op-{i}", MOMENTS[i % 3], MOMENTS[(i + 1) % 3] + timedelta(days=i),
            json.dumps({f"k{n}": f"v{state}" for n in range(i % 3)}),
            json.dumps(dict(zip(["OrderId", "Amount", "Paid"], search_attributes.TYPES[i:], strict=False))
                       if i % 2 else {}))
    return made


async def test_stored_rows_have_only_the_columns_it_renders(account: TestAccount, pool: asyncpg.Pool) -> None:
    """A new column of ``namespaces`` sends every listing through the messages (slow, still right): render it in
    ``namespaces_json`` if ``namespace_message`` does, then list it in ``RENDERED_COLUMNS``."""
    rows = await namespace_store.list_account_namespaces(pool, account.id, limit=10)
    assert rows and set(rows[0].keys()) <= RENDERED_COLUMNS


@pytest.mark.parametrize("query", [{}, {"pageSize": "2"}, {"name": "updating"}, {"name": "nothing"}])
async def test_the_json_door_answers_what_the_grpc_door_answers(doors: TestClient, account: TestAccount,
                                                                query: dict[str, str]) -> None:
    cloud = (await CloudOperationsClient.connect(target_host=f"127.0.0.1:{doors.app[CLOUD_API].port}",
                                                 api_key=account.token, tls=False)).cloud_service
    token, pages, listed = "", 0, []
    while True:
        resp = await doors.get("/cloud/namespaces", headers=account.headers, params={**query, "pageToken": token})
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        page = await cloud.get_namespaces(GetNamespacesRequest(
            page_size=int(query.get("pageSize", 0)), page_token=token, name=query.get("name", "")))
        assert_same(await resp.read(), json.dumps(MessageToDict(page)).encode())
        listed += [n.spec.name for n in page.namespaces]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    if not query:  # every state but deleted, which is never listed
        assert sorted(listed) == sorted(s for s in STATES if s != "deleted")
    if "pageSize" in query:
        assert pages == 3
