"""Two accounts: neither can read or change the other's resources on any route (they answer 404, as if absent)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import GetApiKeysResponse, GetNamespacesResponse
from temporalio.api.cloud.operation.v1 import AsyncOperation

from tests.accounts_fixtures import create_account, create_namespace, unique


async def test_no_cross_account_read_or_write(api: TestClient, operator_headers: dict[str, str],
                                              worker: None) -> None:
    alice = await create_account(api, operator_headers, prefix="alice")
    bob = await create_account(api, operator_headers, prefix="bob")
    ns, op = await create_namespace(api, alice, unique("secret-"))
    assert op.state == AsyncOperation.STATE_FULFILLED

    for method, path, body in (
        ("GET", f"/cloud/namespaces/{ns}", None),
        ("POST", f"/cloud/namespaces/{ns}", {"spec": {"retentionDays": 3}}),
        ("DELETE", f"/cloud/namespaces/{ns}", None),
        ("POST", f"/cloud/namespaces/{ns}/token", None),
        ("GET", f"/cloud/operations/{op.id}", None),
        ("DELETE", f"/cloud/api-keys/{alice.key_id}", None),
    ):
        resp = await api.request(method, path, headers=bob.headers, json=body)
        assert resp.status == 404, (method, path, await resp.text())
        assert (await resp.json())["code"] == 404

    resp = await api.get("/cloud/namespaces", headers=bob.headers)
    assert Parse(await resp.text(), GetNamespacesResponse()).namespaces == []
    resp = await api.get("/cloud/api-keys", headers=bob.headers)
    assert [k.id for k in Parse(await resp.text(), GetApiKeysResponse()).api_keys] == [bob.key_id]
    # Bob's own namespace of the same name is his own: "<name>.bob", never Alice's.
    name = ns.split(".")[0]
    bobs, op = await create_namespace(api, bob, name)
    assert bobs == f"{name}.{bob.id}" and op.state == AsyncOperation.STATE_FULFILLED

    # Alice's resources are untouched and still hers.
    assert (await api.get(f"/cloud/namespaces/{ns}", headers=alice.headers)).status == 200
    assert (await api.get(f"/cloud/operations/{op.id}", headers=alice.headers)).status == 404
    resp = await api.get("/cloud/api-keys", headers=alice.headers)
    assert [k.id for k in Parse(await resp.text(), GetApiKeysResponse()).api_keys] == [alice.key_id]
    for admin in ("/admin/accounts", f"/admin/accounts/{alice.id}"):
        assert (await api.get(admin, headers=bob.headers)).status == 403
