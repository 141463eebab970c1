"""Users, service accounts, their roles and namespace access, and API keys owned by them: driven through both
doors (Temporal's ``CloudOperationsClient`` over gRPC, and the JSON routes) against the real parts."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest_asyncio
from aiohttp.test_utils import TestClient
from google.protobuf.json_format import MessageToDict, Parse
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateNamespaceRequest,
    CreateServiceAccountRequest,
    CreateUserRequest,
    DeleteServiceAccountRequest,
    DeleteUserRequest,
    GetAccountRequest,
    GetApiKeyRequest,
    GetApiKeysRequest,
    GetAsyncOperationRequest,
    GetCurrentIdentityRequest,
    GetNamespaceRequest,
    GetNamespacesRequest,
    GetServiceAccountRequest,
    GetServiceAccountResponse,
    GetServiceAccountsRequest,
    GetUserRequest,
    GetUserResponse,
    GetUsersRequest,
    SetServiceAccountNamespaceAccessRequest,
    SetUserNamespaceAccessRequest,
    UpdateApiKeyRequest,
    UpdateNamespaceRequest,
    UpdateServiceAccountRequest,
    UpdateUserRequest,
)
from temporalio.api.cloud.identity.v1 import (
    Access,
    AccountAccess,
    ApiKeySpec,
    NamespaceAccess,
    OwnerType,
    ServiceAccountSpec,
    UserSpec,
)
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.client import CloudOperationsClient
from temporalio.service import RPCStatusCode

from api import jwt
from tcloud.settings import Settings
from tcloud.store import accounts as account_store
from tcloud.store.schema import migration_files
from tests import cloud_support
from tests.accounts_fixtures import TestAccount, create_account, unique
from tests.cloud_support import cloud_client, finished, refused
from tests.figures import Figures

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

ADMIN, DEVELOPER = AccountAccess.ROLE_ADMIN, AccountAccess.ROLE_DEVELOPER
FINANCE, READ = AccountAccess.ROLE_FINANCE_ADMIN, AccountAccess.ROLE_READ
P_ADMIN, P_WRITE, P_READ = NamespaceAccess.PERMISSION_ADMIN, NamespaceAccess.PERMISSION_WRITE, \
    NamespaceAccess.PERMISSION_READ
FULFILLED = AsyncOperation.STATE_FULFILLED


account, ops = cloud_support.account_fixtures("ident")


@pytest_asyncio.fixture(scope="module")
async def namespace(ops: CloudOperationsClient) -> str:
    created = await ops.cloud_service.create_namespace(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("idns-"), retention_days=1)))
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    return created.namespace


def access(role: int, namespaces: dict[str, int] | None = None) -> Access:
    return Access(account_access=AccountAccess(role=role),
                  namespace_accesses={ns: NamespaceAccess(permission=p) for ns, p in (namespaces or {}).items()})


async def service_account_with_key(ops: CloudOperationsClient, role: int,
                                   namespaces: dict[str, int] | None = None) -> tuple[str, str]:
    """A new service account with ``role`` and an API key it owns: (its id, the key's token)."""
    made = await ops.cloud_service.create_service_account(CreateServiceAccountRequest(
        spec=ServiceAccountSpec(name=unique("sa-"), access=access(role, namespaces))))
    key = await ops.cloud_service.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=made.service_account_id, owner_type=OwnerType.OWNER_TYPE_SERVICE_ACCOUNT, display_name="k")))
    return made.service_account_id, key.token


async def test_users_created_read_listed_updated_and_deleted(ops: CloudOperationsClient, cloud_app: TestClient,
                                                             account: TestAccount, namespace: str,
                                                             target: str) -> None:
    cloud = ops.cloud_service
    email = f"{unique('dev')}@example.com"
    op_key = "user-" + secrets.token_hex(4)
    request = CreateUserRequest(spec=UserSpec(email=email, access=access(DEVELOPER, {namespace: P_WRITE})),
                                async_operation_id=op_key)
    created = await cloud.create_user(request)
    assert created.async_operation.state == FULFILLED
    assert (await cloud.get_async_operation(GetAsyncOperationRequest(async_operation_id=op_key))
            ).async_operation.state == FULFILLED
    again = await cloud.create_user(request)  # the same request again: the same user, nothing new
    assert again.user_id == created.user_id
    user = (await cloud.get_user(GetUserRequest(user_id=created.user_id))).user
    assert (user.spec.email, user.spec.access.account_access.role, user.resource_version) == (email, DEVELOPER, "1")
    assert dict(user.spec.access.namespace_accesses) == {namespace: NamespaceAccess(
        permission=P_WRITE, permission_deprecated="write")}
    resp = await cloud_app.get(f"/cloud/users/{created.user_id}", headers=account.headers)
    assert Parse(await resp.text(), GetUserResponse()).user == user, "both doors answer the same user"
    listed = await cloud.get_users(GetUsersRequest(email=email.upper()))
    assert [u.id for u in listed.users] == [created.user_id]
    assert created.user_id in [u.id for u in (await cloud.get_users(GetUsersRequest(namespace=namespace))).users]

    err = await refused(cloud.create_user(CreateUserRequest(spec=UserSpec(email=email, access=access(READ)))))
    assert err.status == RPCStatusCode.ALREADY_EXISTS
    err = await refused(cloud.create_user(CreateUserRequest(spec=UserSpec(
        email=f"{unique('x')}@example.com", access=access(READ, {"nope.elsewhere": P_READ})))))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT and "nope.elsewhere" in err.message
    err = await refused(cloud.create_user(CreateUserRequest(spec=UserSpec(email="not-an-email", access=access(READ)))))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT

    updated = await cloud.update_user(UpdateUserRequest(user_id=created.user_id, resource_version="1",
                                                        spec=UserSpec(email=email, access=access(READ))))
    assert updated.async_operation.state == FULFILLED
    err = await refused(cloud.update_user(UpdateUserRequest(user_id=created.user_id, resource_version="1",
                                                            spec=UserSpec(email=email, access=access(ADMIN)))))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION and "stale" in err.message
    await cloud.set_user_namespace_access(SetUserNamespaceAccessRequest(
        namespace=namespace, user_id=created.user_id, access=NamespaceAccess(permission=P_READ)))
    user = (await cloud.get_user(GetUserRequest(user_id=created.user_id))).user
    assert (user.spec.access.account_access.role, user.resource_version) == (READ, "3")
    assert user.spec.access.namespace_accesses[namespace].permission == P_READ

    key = await cloud.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=created.user_id, owner_type=OwnerType.OWNER_TYPE_USER, display_name="laptop")))
    as_user = (await cloud_client(target, key.token)).cloud_service
    identity = await as_user.get_current_identity(GetCurrentIdentityRequest())
    assert (identity.user.id, identity.principal_api_key.spec.owner_id) == (created.user_id, created.user_id)
    assert identity.principal_api_key.spec.owner_type == OwnerType.OWNER_TYPE_USER

    err = await refused(cloud.delete_user(DeleteUserRequest(user_id=created.user_id, resource_version="1")))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION
    deleted = await cloud.delete_user(DeleteUserRequest(user_id=created.user_id))
    assert deleted.async_operation.state == FULFILLED
    assert (await refused(as_user.get_account(GetAccountRequest()))).status == RPCStatusCode.UNAUTHENTICATED, \
        "a deleted user's keys are revoked with it"
    err = await refused(cloud.get_user(GetUserRequest(user_id=created.user_id)))
    assert err.status == RPCStatusCode.NOT_FOUND


async def test_service_accounts_through_the_json_door(ops: CloudOperationsClient, cloud_app: TestClient,
                                                      account: TestAccount, namespace: str) -> None:
    headers = account.headers
    body = {"spec": {"name": "ci", "description": "deploys", "access": {
        "accountAccess": {"role": "ROLE_DEVELOPER"},
        "namespaceAccesses": {namespace: {"permission": "PERMISSION_ADMIN"}}}}}
    resp = await cloud_app.post("/cloud/service-accounts", headers=headers, json=body)
    made = await resp.json()
    assert resp.status == 200 and made["asyncOperation"]["state"] == "STATE_FULFILLED", made
    sa_id = made["serviceAccountId"]
    got = (await ops.cloud_service.get_service_account(GetServiceAccountRequest(service_account_id=sa_id)))
    resp = await cloud_app.get(f"/cloud/service-accounts/{sa_id}", headers=headers)
    assert Parse(await resp.text(), GetServiceAccountResponse()) == got
    assert (got.service_account.spec.name, got.service_account.spec.description) == ("ci", "deploys")
    listed = await ops.cloud_service.get_service_accounts(GetServiceAccountsRequest())
    assert {sa_id, f"sa-{account.id}"} <= {s.id for s in listed.service_account}

    resp = await cloud_app.post(f"/cloud/service-accounts/{sa_id}", headers=headers, json={
        "resourceVersion": "1", "spec": {"name": "ci-2", "access": {"accountAccess": {"role": "ROLE_READ"}}}})
    assert resp.status == 200, await resp.text()
    resp = await cloud_app.post(f"/cloud/service-accounts/{sa_id}", headers=headers, json={
        "resourceVersion": "1", "spec": {"name": "ci-3", "access": {"accountAccess": {"role": "ROLE_READ"}}}})
    assert resp.status == 409 and "stale" in (await resp.json())["message"]
    await ops.cloud_service.set_service_account_namespace_access(SetServiceAccountNamespaceAccessRequest(
        service_account_id=sa_id, namespace=namespace, access=NamespaceAccess(permission=P_WRITE)))
    sa = (await ops.cloud_service.get_service_account(GetServiceAccountRequest(service_account_id=sa_id))
          ).service_account
    assert (sa.spec.name, sa.resource_version) == ("ci-2", "3")
    assert MessageToDict(sa.spec.access)["namespaceAccesses"] == {
        namespace: {"permission": "PERMISSION_WRITE", "permissionDeprecated": "write"}}
    resp = await cloud_app.delete(f"/cloud/service-accounts/{sa_id}", headers=headers)
    assert resp.status == 200
    err = await refused(ops.cloud_service.get_service_account(GetServiceAccountRequest(service_account_id=sa_id)))
    assert err.status == RPCStatusCode.NOT_FOUND
    # The account's admin service account owns the admin's own key: deleting it would lock the account out.
    err = await refused(ops.cloud_service.delete_service_account(DeleteServiceAccountRequest(
        service_account_id=f"sa-{account.id}")))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION and "admin" in err.message
    err = await refused(ops.cloud_service.update_service_account(UpdateServiceAccountRequest(
        service_account_id=f"sa-{account.id}", spec=ServiceAccountSpec(name="x", access=access(READ)))))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION


async def _json_status(cloud_app: TestClient, method: str, path: str, token: str, body: Any = None) -> int:
    resp = await cloud_app.request(method, path, headers={"Authorization": f"Bearer {token}"}, json=body)
    return resp.status


def _role_calls(cloud: Any, namespace: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call per gRPC cell of the role matrix; invalid on purpose where it would change something, so an
    allowed caller gets INVALID_ARGUMENT and nothing is made."""
    return {
        "CreateNamespace": lambda: cloud.create_namespace(CreateNamespaceRequest(
            spec=NamespaceSpec(name="Bad_Name"))),
        "GetNamespaces": lambda: cloud.get_namespaces(GetNamespacesRequest()),
        "GetNamespace": lambda: cloud.get_namespace(GetNamespaceRequest(namespace=namespace)),
        "UpdateNamespace": lambda: cloud.update_namespace(UpdateNamespaceRequest(
            namespace=namespace, spec=NamespaceSpec(retention_days=1000))),
        "CreateUser": lambda: cloud.create_user(CreateUserRequest(spec=UserSpec(email="bad", access=access(READ)))),
        "GetUsers": lambda: cloud.get_users(GetUsersRequest()),
        "CreateServiceAccount": lambda: cloud.create_service_account(CreateServiceAccountRequest(
            spec=ServiceAccountSpec(name="", access=access(READ)))),
        "GetAccount": lambda: cloud.get_account(GetAccountRequest()),
        "own API key": lambda: cloud.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(display_name="mine"))),
    }


async def test_role_matrix(ops: CloudOperationsClient, cloud_app: TestClient, target: str, namespace: str,
                           figures: Figures) -> None:
    """Each account role, through both doors: what it may do passes authorization (and fails later, on purpose,
    on validation where it would change something), what it may not answers PERMISSION_DENIED / 403."""
    roles = {"admin": ADMIN, "developer": DEVELOPER, "finance_admin": FINANCE, "read": READ}
    allowed = {  # cell -> roles allowed
        "CreateNamespace": {"admin", "developer"},
        "GetNamespaces": {"admin", "developer", "read"},
        "GetNamespace": {"admin", "developer", "read"},
        "UpdateNamespace": {"admin"},
        "CreateUser": {"admin"},
        "GetUsers": {"admin", "developer", "read"},
        "CreateServiceAccount": {"admin"},
        "GetAccount": {"admin", "developer", "finance_admin", "read"},
        "GET /cloud/usage": {"admin", "finance_admin"},
        "GET /cloud/billing/invoices": {"admin", "finance_admin"},
        "POST /cloud/namespaces": {"admin", "developer"},
        "data-plane token": {"admin", "read"},
        "own API key": {"admin", "developer", "finance_admin", "read"},
    }
    cells = 0
    for role_name, role in roles.items():
        owner, token = await service_account_with_key(ops, role)
        cloud = (await cloud_client(target, token)).cloud_service
        grpc_calls = _role_calls(cloud, namespace)
        for cell, call in grpc_calls.items():
            try:
                await call()
                denied = False
            except Exception as err:  # any other refusal means authorization let it through
                denied = getattr(err, "status", None) == RPCStatusCode.PERMISSION_DENIED
            assert denied == (role_name not in allowed[cell]), (role_name, cell)
            cells += 1
        http = {
            "GET /cloud/usage": await _json_status(cloud_app, "GET", "/cloud/usage", token),
            "GET /cloud/billing/invoices": await _json_status(cloud_app, "GET", "/cloud/billing/invoices", token),
            "POST /cloud/namespaces": await _json_status(cloud_app, "POST", "/cloud/namespaces", token,
                                                         {"spec": {"name": "Bad_Name"}}),
            "data-plane token": await _json_status(cloud_app, "POST", f"/cloud/namespaces/{namespace}/token", token),
        }
        for cell, status in http.items():
            assert (status == 403) == (role_name not in allowed[cell]), (role_name, cell, status)
            cells += 1
        # Nobody but an admin manages another identity's keys.
        if role_name != "admin":
            err = await refused(cloud.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
                owner_id=f"sa-{namespace.rsplit('.', 1)[1]}", display_name="theirs"))))
            assert err.status == RPCStatusCode.PERMISSION_DENIED, role_name
            mine = await cloud.get_api_keys(GetApiKeysRequest())
            assert {k.spec.owner_id for k in mine.api_keys} == {owner}, "others see only their own keys"
            cells += 2
    figures.add("Cloud Ops role-matrix cells checked", cells)


async def test_namespace_access_limits_data_plane_tokens(ops: CloudOperationsClient, cloud_app: TestClient,
                                                         namespace: str, settings: Settings) -> None:
    owner, token = await service_account_with_key(ops, DEVELOPER, {namespace: P_READ})
    path = f"/cloud/namespaces/{namespace}/token"
    headers = {"Authorization": f"Bearer {token}"}
    resp = await cloud_app.post(path, headers=headers)
    body = await resp.json()
    assert (resp.status, body["role"]) == (200, "read"), body
    assert jwt.verify(settings, body["token"])["permissions"] == [f"{namespace}:read"]
    resp = await cloud_app.post(path, headers=headers, json={"role": "write"})
    assert resp.status == 403
    await ops.cloud_service.set_service_account_namespace_access(SetServiceAccountNamespaceAccessRequest(
        service_account_id=owner, namespace=namespace, access=NamespaceAccess(permission=P_WRITE)))
    resp = await cloud_app.post(path, headers=headers, json={"role": "write"})
    assert jwt.verify(settings, (await resp.json())["token"])["permissions"] == [f"{namespace}:write"]
    await ops.cloud_service.set_service_account_namespace_access(SetServiceAccountNamespaceAccessRequest(
        service_account_id=owner, namespace=namespace, access=NamespaceAccess()))  # no permission: removed
    assert (await cloud_app.post(path, headers=headers)).status == 403


async def test_a_developer_administers_the_namespaces_it_creates(ops: CloudOperationsClient, target: str,
                                                                  namespace: str) -> None:
    owner, token = await service_account_with_key(ops, DEVELOPER)
    dev = (await cloud_client(target, token)).cloud_service
    created = await dev.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=unique("dev-"),
                                                                                   retention_days=1)))
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    sa = (await ops.cloud_service.get_service_account(GetServiceAccountRequest(service_account_id=owner))
          ).service_account
    assert sa.spec.access.namespace_accesses[created.namespace].permission == P_ADMIN
    updated = await dev.update_namespace(UpdateNamespaceRequest(namespace=created.namespace,
                                                                spec=NamespaceSpec(retention_days=2)))
    assert (await finished(ops, updated.async_operation.id)).state == FULFILLED
    err = await refused(dev.update_namespace(UpdateNamespaceRequest(namespace=namespace,
                                                                    spec=NamespaceSpec(retention_days=2))))
    assert err.status == RPCStatusCode.PERMISSION_DENIED, "not its namespace"


async def test_update_api_key_disables_and_enables_it(ops: CloudOperationsClient, target: str,
                                                      account: TestAccount, cloud_app: TestClient,
                                                      operator_headers: dict[str, str]) -> None:
    cloud = ops.cloud_service
    owner, token = await service_account_with_key(ops, READ)
    keys = await cloud.get_api_keys(GetApiKeysRequest(owner_id=owner))
    [key] = keys.api_keys
    assert (key.spec.owner_type, key.spec.disabled, key.resource_version) == (
        OwnerType.OWNER_TYPE_SERVICE_ACCOUNT, False, "1")
    theirs = (await cloud_client(target, token)).cloud_service
    spec = ApiKeySpec(owner_id=owner, display_name="k", disabled=True)
    done = await cloud.update_api_key(UpdateApiKeyRequest(key_id=key.id, spec=spec, resource_version="1"))
    assert done.async_operation.state == FULFILLED
    assert (await refused(theirs.get_account(GetAccountRequest()))).status == RPCStatusCode.UNAUTHENTICATED
    assert (await cloud.get_api_key(GetApiKeyRequest(key_id=key.id))).api_key.spec.disabled
    err = await refused(cloud.update_api_key(UpdateApiKeyRequest(key_id=key.id, spec=spec, resource_version="1")))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION
    err = await refused(cloud.update_api_key(UpdateApiKeyRequest(
        key_id=key.id, spec=ApiKeySpec(owner_id=f"sa-{account.id}", display_name="k"))))
    assert err.status == RPCStatusCode.INVALID_ARGUMENT and "ownerId" in err.message
    await cloud.update_api_key(UpdateApiKeyRequest(key_id=key.id, spec=ApiKeySpec(owner_id=owner, display_name="k2")))
    assert (await theirs.get_account(GetAccountRequest())).account.id == account.id, "enabled again"
    # An account's last usable admin key cannot be disabled (nobody could manage the account any more).
    alone = await create_account(cloud_app, operator_headers, prefix="ialone")
    err = await refused((await cloud_client(target, alone.token)).cloud_service.update_api_key(UpdateApiKeyRequest(
        key_id=alone.key_id, spec=ApiKeySpec(disabled=True))))
    assert err.status == RPCStatusCode.FAILED_PRECONDITION and "admin" in err.message


async def test_a_suspended_account_can_still_take_access_away(cloud_app: TestClient, target: str,
                                                              operator_headers: dict[str, str]) -> None:
    """Suspended (say, for a failed payment), an account reads but creates and changes nothing, except what takes
    access away: disable or revoke a key, remove a namespace permission, delete a user or service account."""
    owner = await create_account(cloud_app, operator_headers, prefix="isusp")
    cloud = (await cloud_client(target, owner.token)).cloud_service
    created = await cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(name=unique("susp-"),
                                                                                      retention_days=1)))
    ns = created.namespace
    user = await cloud.create_user(CreateUserRequest(spec=UserSpec(email=f"{unique('u')}@example.com",
                                                                   access=access(DEVELOPER, {ns: P_WRITE}))))
    gone = await cloud.create_user(CreateUserRequest(spec=UserSpec(email=f"{unique('g')}@example.com",
                                                                   access=access(READ))))
    sa = await cloud.create_service_account(CreateServiceAccountRequest(spec=ServiceAccountSpec(
        name=unique("sa-"), access=access(READ))))
    key = await cloud.create_api_key(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=user.user_id, owner_type=OwnerType.OWNER_TYPE_USER, display_name="laptop", description="d")))
    resp = await cloud_app.post(f"/admin/accounts/{owner.id}/suspend", headers=operator_headers,
                                json={"reason": "payment failed"})
    assert resp.status == 200, await resp.text()

    async def denied(call: Awaitable[Any]) -> None:
        err = await refused(call)
        assert err.status == RPCStatusCode.PERMISSION_DENIED and "suspended" in err.message, err.message

    await denied(cloud.update_api_key(UpdateApiKeyRequest(key_id=key.key_id, spec=ApiKeySpec(
        owner_id=user.user_id, display_name="renamed", description="d", disabled=True))))  # more than disabling
    await denied(cloud.set_user_namespace_access(SetUserNamespaceAccessRequest(
        namespace=ns, user_id=user.user_id, access=NamespaceAccess(permission=P_ADMIN))))  # a grant
    await denied(cloud.create_user(CreateUserRequest(spec=UserSpec(email=f"{unique('n')}@example.com",
                                                                   access=access(READ)))))
    await cloud.update_api_key(UpdateApiKeyRequest(key_id=key.key_id, spec=ApiKeySpec(
        owner_id=user.user_id, display_name="laptop", description="d", disabled=True)))
    assert (await cloud.get_api_key(GetApiKeyRequest(key_id=key.key_id))).api_key.spec.disabled
    await denied(cloud.update_api_key(UpdateApiKeyRequest(key_id=key.key_id, spec=ApiKeySpec(
        owner_id=user.user_id, display_name="laptop", description="d", disabled=False))))  # enabling gives access
    await cloud.set_user_namespace_access(SetUserNamespaceAccessRequest(
        namespace=ns, user_id=user.user_id, access=NamespaceAccess()))
    assert ns not in (await cloud.get_user(GetUserRequest(user_id=user.user_id))).user.spec.access.namespace_accesses
    await cloud.delete_user(DeleteUserRequest(user_id=gone.user_id))
    await cloud.delete_service_account(DeleteServiceAccountRequest(service_account_id=sa.service_account_id))
    for call in (cloud.get_user(GetUserRequest(user_id=gone.user_id)),
                 cloud.get_service_account(GetServiceAccountRequest(service_account_id=sa.service_account_id))):
        assert (await refused(call)).status == RPCStatusCode.NOT_FOUND


async def test_existing_keys_migrate_to_an_admin_service_account(postgres: Any) -> None:
    """Keys made before identities keep all of their account's rights: the migration gives each account an admin
    service account owning them."""
    name = "t_identity_migration_" + secrets.token_hex(3)
    server = await asyncpg.connect(postgres.server_dsn)
    await server.execute(f'CREATE DATABASE "{name}"')
    await server.close()
    conn = await asyncpg.connect(postgres.dsn(name))
    try:
        files = migration_files()
        before = [sql for file, sql in files if file < "0103_identities.sql"]
        after = [sql for file, sql in files if file >= "0103_identities.sql"]
        for sql in before:
            await conn.execute(sql)
        await conn.execute("INSERT INTO accounts (id, name, email) VALUES ('oldco', 'Old', 'o@example.com')")
        await conn.execute("""INSERT INTO api_keys (id, account_id, prefix, secret_hash)
                              VALUES ('key-old', 'oldco', 'tc_old', '\\x00'::bytea)""")
        for sql in after:
            await conn.execute(sql)
        row = await conn.fetchrow("""SELECT i.id, i.kind, i.account_role, i.state FROM api_keys k
                                       JOIN identities i ON i.id = k.owner_id WHERE k.id = 'key-old'""")
        assert dict(row) == {"id": "sa-oldco", "kind": "service_account", "account_role": "admin", "state": "active"}
        found = await account_store.find_active_key_by_prefix(conn, "tc_old")
        assert found is not None and (found["account_role"], found["owner_id"]) == ("admin", "sa-oldco")
        # A key inserted later without an owner (an account's first key) gets the same owner.
        await conn.execute("INSERT INTO accounts (id, name, email) VALUES ('newco', 'New', 'n@example.com')")
        issued = await account_store.issue_key(conn, "newco")
        assert await conn.fetchval("SELECT owner_id FROM api_keys WHERE id = $1", issued.key_id) == "sa-newco"
    finally:
        await conn.close()
        server = await asyncpg.connect(postgres.server_dsn)
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()
