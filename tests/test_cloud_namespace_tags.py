"""Namespace tags through Temporal's own ``CloudOperationsClient`` (and the JSON door), against the real API process,
Postgres and worker: set at creation or by UpdateNamespaceTags, checked as Temporal Cloud documents, account admins
only."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient
from google.protobuf.json_format import Parse
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateNamespaceRequest,
    CreateServiceAccountRequest,
    GetNamespaceRequest,
    GetNamespaceResponse,
    GetNamespacesRequest,
    UpdateNamespaceTagsRequest,
)
from temporalio.api.cloud.identity.v1 import (
    Access,
    AccountAccess,
    ApiKeySpec,
    NamespaceAccess,
    OwnerType,
    ServiceAccountSpec,
)
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.client import CloudOperationsClient
from temporalio.service import RPCStatusCode

from tests import cloud_support
from tests.accounts_fixtures import TestAccount, create_account, unique
from tests.cloud_support import cloud_client, finished, refused

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

FULFILLED = AsyncOperation.STATE_FULFILLED
ADMIN, DEVELOPER = AccountAccess.ROLE_ADMIN, AccountAccess.ROLE_DEVELOPER
FINANCE, READ = AccountAccess.ROLE_FINANCE_ADMIN, AccountAccess.ROLE_READ


account, ops = cloud_support.account_fixtures("tags")


@pytest_asyncio.fixture(scope="module")
async def namespace(ops: CloudOperationsClient) -> str:
    """A namespace created with two tags."""
    created = await ops.cloud_service.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("tg-"), retention_days=1), tags={"team": "billing", "env": "dev"}))
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    return created.namespace


async def key_with_role(ops: CloudOperationsClient, role: AccountAccess.Role.ValueType,
                        namespaces: dict[str, NamespaceAccess.Permission.ValueType] | None = None) -> str:
    made = await ops.cloud_service.create_service_account(CreateServiceAccountRequest(spec=ServiceAccountSpec(
        name=unique("sa-"), access=Access(account_access=AccountAccess(role=role), namespace_accesses={
            ns: NamespaceAccess(permission=p) for ns, p in (namespaces or {}).items()}))))
    key = await ops.cloud_service.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=made.service_account_id, owner_type=OwnerType.OWNER_TYPE_SERVICE_ACCOUNT, display_name="k")))
    return key.token


async def tags_of(ops: CloudOperationsClient, namespace: str) -> dict[str, str]:
    return dict((await ops.cloud_service.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace.tags)


async def test_tags_set_at_creation_then_upserted_and_removed(ops: CloudOperationsClient, namespace: str,
                                                              cloud_app: TestClient, account: TestAccount,
                                                              pool: asyncpg.Pool) -> None:
    cloud = ops.cloud_service
    before = (await cloud.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace
    assert dict(before.tags) == {"team": "billing", "env": "dev"}
    listed = await cloud.get_namespaces(GetNamespacesRequest(name=before.spec.name))
    assert dict(listed.namespaces[0].tags) == dict(before.tags)

    op_id = "tags-" + secrets.token_hex(6)
    changed = await cloud.update_namespace_tags(UpdateNamespaceTagsRequest(
        namespace=namespace, tags_to_upsert={"env": "prod", "cost-center": "cc.42@eu"}, tags_to_remove=["team"],
        async_operation_id=op_id))
    assert changed.async_operation.state == FULFILLED and changed.async_operation.id == op_id
    assert (await finished(ops, op_id)).state == FULFILLED
    after = (await cloud.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace
    assert dict(after.tags) == {"env": "prod", "cost-center": "cc.42@eu"}
    assert after.resource_version == before.resource_version  # tags are outside the spec's resource version
    assert after.spec.retention_days == before.spec.retention_days  # tags change nothing else

    # The same async_operation_id again is a retry: the first answer, nothing changed.
    again = await cloud.update_namespace_tags(UpdateNamespaceTagsRequest(
        namespace=namespace, tags_to_upsert={"env": "other"}, async_operation_id=op_id))
    assert again.async_operation.id == op_id
    assert await tags_of(ops, namespace) == {"env": "prod", "cost-center": "cc.42@eu"}
    assert await pool.fetchval("SELECT count(*) FROM async_operations WHERE id = $1", op_id) == 1

    # The JSON door: the same method at the descriptor's path, and the same view.
    resp = await cloud_app.post(f"/cloud/namespaces/{namespace}/update-tags", headers=account.headers,
                                json={"tagsToRemove": ["cost-center"]})
    assert resp.status == 200, await resp.text()
    resp = await cloud_app.get(f"/cloud/namespaces/{namespace}", headers=account.headers)
    over_http = Parse(await resp.text(), GetNamespaceResponse()).namespace
    assert dict(over_http.tags) == {"env": "prod"}
    assert over_http == (await cloud.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace


async def test_tags_are_checked_as_temporal_cloud_documents(ops: CloudOperationsClient, namespace: str,
                                                           account: TestAccount) -> None:
    cloud = ops.cloud_service
    before = await tags_of(ops, namespace)
    bad: list[dict[str, Any]] = [
        {"tags_to_upsert": {"Team": "x"}},  # uppercase
        {"tags_to_upsert": {"team": "a b"}},  # space
        {"tags_to_upsert": {"team": "x" * 64}},  # too long
        {"tags_to_upsert": {"team": ""}},  # empty value
        {"tags_to_upsert": {"team": "x"}, "tags_to_remove": ["team"]},  # both
        {"tags_to_upsert": {f"k{i}": "v" for i in range(11)}},  # more than 10
        {"tags_to_remove": ["Bad Key"]},
    ]
    for fields in bad:
        err = await refused(cloud.update_namespace_tags(UpdateNamespaceTagsRequest(namespace=namespace, **fields)))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, fields
    assert await tags_of(ops, namespace) == before
    name = unique("tgbad-")
    err = await refused(cloud.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=name, retention_days=1), tags={"ok": "UPPER"})))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT
    err = await refused(cloud.get_namespace(GetNamespaceRequest(namespace=f"{name}.{account.id}")))
    assert err.status == RPCStatusCode.NOT_FOUND, "a refused creation reserves nothing"
    err = await refused(cloud.update_namespace_tags(UpdateNamespaceTagsRequest(
        namespace=f"nosuch.{account.id}", tags_to_upsert={"a": "b"})))
    assert err.status == RPCStatusCode.NOT_FOUND


async def test_only_account_admins_tag_and_other_accounts_see_nothing(
        ops: CloudOperationsClient, namespace: str, target: str, cloud_app: TestClient,
        operator_headers: dict[str, str]) -> None:
    before = await tags_of(ops, namespace)
    change = UpdateNamespaceTagsRequest(namespace=namespace, tags_to_upsert={"owner": "intruder"})
    namespace_admin = await key_with_role(ops, DEVELOPER, {namespace: NamespaceAccess.PERMISSION_ADMIN})
    for token in (namespace_admin, await key_with_role(ops, FINANCE), await key_with_role(ops, READ)):
        cloud = (await cloud_client(target, token)).cloud_service
        err = await refused(cloud.update_namespace_tags(change))
        assert err.status == RPCStatusCode.PERMISSION_DENIED, err
    # Every reader sees them; a developer may create namespaces, but not tagged ones.
    reader = (await cloud_client(target, await key_with_role(ops, READ))).cloud_service
    assert dict((await reader.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace.tags) == before
    developer = (await cloud_client(target, await key_with_role(ops, DEVELOPER))).cloud_service
    err = await refused(developer.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("tgdev-"), retention_days=1), tags={"a": "b"})))
    assert err.status == RPCStatusCode.PERMISSION_DENIED

    other = await create_account(cloud_app, operator_headers, prefix="tagso")
    theirs = (await cloud_client(target, other.token)).cloud_service
    err = await refused(theirs.update_namespace_tags(change))
    assert err.status == RPCStatusCode.NOT_FOUND
    assert await tags_of(ops, namespace) == before
