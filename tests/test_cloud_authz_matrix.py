"""The authorization matrix of the Cloud Ops gRPC door: every method of ``CloudService`` by every kind of caller.

Every method of the service descriptor (not a hand list) is called over real gRPC by callers that must be refused
(no metadata, a wrong key, a malformed key, a revoked, disabled or expired key, the key of a deleted user, the
operator's token: the Cloud Ops API is the customers' door, the operator has no account there, as on the JSON
routes), by the account's first key, by a user and a service account of each account role, and by two callers whose
namespace permission decides (a developer administering the namespace, a finance admin reading it). What each role
may do is :data:`POLICY`, declared here as a Temporal Cloud customer expects it, independently of the product's own
table (``tcloud.domain.access``), so that a change there that widens a role fails this test. Then each of Alice's
callers names Bob's resources: the answer must be the one a resource that does not exist gets (NOT_FOUND for a
caller the role lets through), word for word but for the id, and Bob's resources stay unchanged.

A method added to ``api.cloud_grpc.METHODS`` without a :class:`Rule` here fails the test until the matrix is taught
how to fill its request and whom it serves; a method of the descriptor not implemented answers UNIMPLEMENTED to every
authenticated caller (and UNAUTHENTICATED to the others: nothing is said before the caller is known).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import get_args

import asyncpg
import grpc
import pytest_asyncio
from aiohttp.test_utils import TestClient
from google.protobuf.message import Message
from temporalio.api.cloud.cloudservice.v1 import (
    CreateApiKeyRequest,
    CreateBillingReportRequest,
    CreateNamespaceRequest,
    CreateServiceAccountRequest,
    CreateUserRequest,
    DeleteApiKeyRequest,
    DeleteNamespaceRequest,
    DeleteServiceAccountRequest,
    DeleteUserRequest,
    GetAccountRequest,
    GetApiKeyRequest,
    GetApiKeysRequest,
    GetAsyncOperationRequest,
    GetBillingReportRequest,
    GetCurrentIdentityRequest,
    GetNamespaceRequest,
    GetNamespaceResponse,
    GetNamespacesRequest,
    GetRegionRequest,
    GetRegionsRequest,
    GetServiceAccountRequest,
    GetServiceAccountResponse,
    GetServiceAccountsRequest,
    GetUsageRequest,
    GetUserRequest,
    GetUserResponse,
    GetUsersRequest,
    RenameCustomSearchAttributeRequest,
    SetServiceAccountNamespaceAccessRequest,
    SetUserNamespaceAccessRequest,
    UpdateApiKeyRequest,
    UpdateNamespaceRequest,
    UpdateNamespaceTagsRequest,
    UpdateServiceAccountRequest,
    UpdateUserRequest,
)
from temporalio.api.cloud.identity.v1 import ApiKeySpec, NamespaceAccess, OwnerType, ServiceAccountSpec, UserSpec
from temporalio.api.cloud.namespace.v1 import NamespaceSpec
from temporalio.api.cloud.resource.v1 import ResourceState

from api import cloud_grpc
from tcloud.domain import access
from tcloud.settings import Settings
from tests.accounts_fixtures import unique
from tests.cloud_door_support import (
    PERMISSIONS,
    Door,
    Outcome,
    Tenant,
    door_of,
    make_tenant,
    new_key,
    new_namespace,
    new_service_account,
    new_user,
    report_spec,
    request_class,
    role_access,
    unthrottled_cloud_app,
)
from tests.figures import Figures

__all__ = ["unthrottled_cloud_app"]  # the module's fixture, from the support module

Code = grpc.StatusCode

# --- The policy: who may call what ----------------------------------------------------------------------------

EVERYONE = frozenset({"admin", "developer", "finance_admin", "read"})
READERS = frozenset({"admin", "developer", "read"})  # finance_admin reads billing and usage, not namespaces
NAMESPACE_MAKERS = frozenset({"admin", "developer"})
ADMINS = frozenset({"admin"})
BILLING = frozenset({"admin", "finance_admin"})


@dataclass(frozen=True)
class Target:
    """Whose resources a request names: the ids it fills in."""

    namespace: str
    operation_id: str
    key_id: str
    user_id: str
    user_email: str
    service_account_id: str
    billing_report_id: str

    @classmethod
    def of(cls, tenant: Tenant) -> Target:
        return cls(tenant.namespace, tenant.operation_id, tenant.key_id, tenant.user_id, tenant.user_email,
                   tenant.service_account_id, tenant.billing_report_id)

    def nowhere(self) -> Target:
        """Ids of the same shape that name nothing."""
        return Target(*(value.replace("@", "0@") if "@" in value else value + "0" for value in self.ids()))

    def ids(self) -> tuple[str, ...]:
        return (self.namespace, self.operation_id, self.key_id, self.user_id, self.user_email,
                self.service_account_id, self.billing_report_id)


@dataclass
class Fill:
    """What a request builder needs: whose resources, and whether the call is one the policy lets through on
    the caller's own account (then a destructive method gets a resource of its own to destroy)."""

    matrix: Matrix
    target: Target
    effective: bool  # the caller's own account, and a role the policy allows: the call will change things
    holder: Holder | None = None  # the caller, when it is its namespace permission that lets the call through

    async def doomed(self, kind: str) -> str:
        """The id of a resource the call may destroy: a fresh one when the call will succeed (with the caller's
        permission on it, when that is what lets the call through)."""
        if not self.effective:
            return str(getattr(self.target, kind))
        fresh = await self.matrix.fresh(kind)
        if self.holder is not None and kind == "namespace":
            await self.matrix.grant(self.holder, fresh)
        return fresh

    async def settled(self) -> str:
        """The target namespace, once no operation of an earlier cell is running on it."""
        if self.effective:
            await self.matrix.settle(self.target.namespace)
        return self.target.namespace


Build = Callable[[Fill], Awaitable[Message]]
PERMISSION_RANK = {"read": 1, "write": 2, "admin": 3}


@dataclass(frozen=True)
class Holder:
    """A caller whose identity holds a permission on Alice's namespace (and on the namespaces it is to destroy)."""

    permission: str
    identity_id: str
    kind: str  # "user" or "service_account"


@dataclass(frozen=True)
class Rule:
    """One method: the account roles it answers OK on the caller's own resources (all others: PERMISSION_DENIED,
    unless ``by_permission`` on the namespace lets them through), how to fill its request, and whether the request
    names a resource (then another account's answers ``foreign``, as one that does not exist)."""

    allowed: frozenset[str]
    build: Build
    names_resource: bool = False
    foreign: Code = Code.NOT_FOUND
    by_permission: str | None = None  # a permission on the target namespace that lets any role through too


async def _retention(fill: Fill) -> NamespaceSpec:
    return NamespaceSpec(retention_days=fill.matrix.next_retention())


# Each implemented method: a Rule. The place to teach the matrix a new method.
POLICY: dict[str, Rule] = {
    # The account, its region, the caller itself: every role.
    "GetAccount": Rule(EVERYONE, lambda f: _done(GetAccountRequest())),
    "GetRegions": Rule(EVERYONE, lambda f: _done(GetRegionsRequest())),
    "GetRegion": Rule(EVERYONE, lambda f: _done(GetRegionRequest(region=f.matrix.region))),
    "GetCurrentIdentity": Rule(EVERYONE, lambda f: _done(GetCurrentIdentityRequest())),
    "GetAsyncOperation": Rule(EVERYONE, lambda f: _done(GetAsyncOperationRequest(
        async_operation_id=f.target.operation_id)), names_resource=True),
    # Namespaces: read by the roles that read (and by any role with a permission on the namespace), made by
    # developers too, changed by admins and by the namespace's own admins; tags are the account admins' alone.
    "GetNamespaces": Rule(READERS, lambda f: _done(GetNamespacesRequest()), by_permission="read"),
    "GetNamespace": Rule(READERS, lambda f: _done(GetNamespaceRequest(namespace=f.target.namespace)),
                         names_resource=True, by_permission="read"),
    "CreateNamespace": Rule(NAMESPACE_MAKERS, lambda f: _done(CreateNamespaceRequest(
        spec=NamespaceSpec(name=unique("mxc-"), retention_days=1)))),
    "UpdateNamespace": Rule(ADMINS, lambda f: _update_namespace(f), names_resource=True, by_permission="admin"),
    "DeleteNamespace": Rule(ADMINS, lambda f: _delete_namespace(f), names_resource=True, by_permission="admin"),
    "RenameCustomSearchAttribute": Rule(ADMINS, lambda f: _rename_search_attribute(f), names_resource=True,
                                        by_permission="admin"),
    "UpdateNamespaceTags": Rule(ADMINS, lambda f: _done(UpdateNamespaceTagsRequest(
        namespace=f.target.namespace, tags_to_upsert={"team": "matrix"})), names_resource=True),
    # API keys: everyone lists its own; another identity's key (here the spare key of the account's admin service
    # account, a key for the target user) is the admins' alone.
    "GetApiKeys": Rule(EVERYONE, lambda f: _done(GetApiKeysRequest())),
    "GetApiKey": Rule(ADMINS, lambda f: _done(GetApiKeyRequest(key_id=f.target.key_id)), names_resource=True),
    "CreateApiKey": Rule(ADMINS, lambda f: _done(CreateApiKeyRequest(spec=ApiKeySpec(
        owner_id=f.target.user_id, owner_type=OwnerType.OWNER_TYPE_USER, display_name="matrix"))),
        names_resource=True, foreign=Code.INVALID_ARGUMENT),  # the owner is a field of the spec: a bad argument
    "UpdateApiKey": Rule(ADMINS, lambda f: _done(UpdateApiKeyRequest(
        key_id=f.target.key_id, spec=ApiKeySpec(display_name=unique("mx-")))), names_resource=True),
    "DeleteApiKey": Rule(ADMINS, lambda f: _delete_api_key(f), names_resource=True),
    # Usage and billing reports: admins and finance admins.
    "GetUsage": Rule(BILLING, lambda f: _done(GetUsageRequest())),
    "CreateBillingReport": Rule(BILLING, lambda f: _done(CreateBillingReportRequest(spec=report_spec()))),
    "GetBillingReport": Rule(BILLING, lambda f: _done(GetBillingReportRequest(
        billing_report_id=f.target.billing_report_id)), names_resource=True),
    # Users and service accounts: read by the roles that read, managed by admins.
    "GetUsers": Rule(READERS, lambda f: _done(GetUsersRequest())),
    "GetUser": Rule(READERS, lambda f: _done(GetUserRequest(user_id=f.target.user_id)), names_resource=True),
    "CreateUser": Rule(ADMINS, lambda f: _done(CreateUserRequest(spec=UserSpec(
        email=f"{unique('mxu')}@example.com", access=role_access("read"))))),
    "UpdateUser": Rule(ADMINS, lambda f: _done(UpdateUserRequest(user_id=f.target.user_id, spec=UserSpec(
        email=f.target.user_email, access=role_access("read")))), names_resource=True),
    "DeleteUser": Rule(ADMINS, lambda f: _delete_user(f), names_resource=True),
    "SetUserNamespaceAccess": Rule(ADMINS, lambda f: _done(SetUserNamespaceAccessRequest(
        namespace=f.target.namespace, user_id=f.target.user_id,
        access=NamespaceAccess(permission=NamespaceAccess.PERMISSION_READ))), names_resource=True),
    "GetServiceAccounts": Rule(READERS, lambda f: _done(GetServiceAccountsRequest())),
    "GetServiceAccount": Rule(READERS, lambda f: _done(GetServiceAccountRequest(
        service_account_id=f.target.service_account_id)), names_resource=True),
    "CreateServiceAccount": Rule(ADMINS, lambda f: _done(CreateServiceAccountRequest(spec=ServiceAccountSpec(
        name=unique("mxs-"), access=role_access("read"))))),
    "UpdateServiceAccount": Rule(ADMINS, lambda f: _done(UpdateServiceAccountRequest(
        service_account_id=f.target.service_account_id,
        spec=ServiceAccountSpec(name="matrix", access=role_access("read")))), names_resource=True),
    "DeleteServiceAccount": Rule(ADMINS, lambda f: _delete_service_account(f), names_resource=True),
    "SetServiceAccountNamespaceAccess": Rule(ADMINS, lambda f: _done(SetServiceAccountNamespaceAccessRequest(
        namespace=f.target.namespace, service_account_id=f.target.service_account_id,
        access=NamespaceAccess(permission=NamespaceAccess.PERMISSION_READ))), names_resource=True),
}


async def _done(request: Message) -> Message:
    return request


async def _update_namespace(fill: Fill) -> Message:
    namespace = await fill.settled()
    return UpdateNamespaceRequest(namespace=namespace, spec=await _retention(fill))


async def _rename_search_attribute(fill: Fill) -> Message:
    """Rename the namespace's custom search attribute (added by the first call that will succeed)."""
    namespace = await fill.settled()
    matrix = fill.matrix
    if not fill.effective:
        return RenameCustomSearchAttributeRequest(namespace=namespace, existing_custom_search_attribute_name=(
            matrix.attribute or "MxAttr0"), new_custom_search_attribute_name="MxOther")
    if matrix.attribute is None:
        matrix.attribute = "MxAttr0"
        await matrix.door.ok("UpdateNamespace", UpdateNamespaceRequest(namespace=namespace, spec=NamespaceSpec(
            search_attributes={matrix.attribute: NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_KEYWORD})), matrix.alice.token)
        await matrix.settle(namespace)
    old, matrix.attribute = matrix.attribute, f"MxAttr{int(matrix.attribute.removeprefix('MxAttr')) + 1}"
    return RenameCustomSearchAttributeRequest(namespace=namespace, existing_custom_search_attribute_name=old,
                                              new_custom_search_attribute_name=matrix.attribute)


async def _delete_namespace(fill: Fill) -> Message:
    return DeleteNamespaceRequest(namespace=await fill.doomed("namespace"))


async def _delete_api_key(fill: Fill) -> Message:
    return DeleteApiKeyRequest(key_id=await fill.doomed("key_id"))


async def _delete_user(fill: Fill) -> Message:
    return DeleteUserRequest(user_id=await fill.doomed("user_id"))


async def _delete_service_account(fill: Fill) -> Message:
    return DeleteServiceAccountRequest(service_account_id=await fill.doomed("service_account_id"))


# Callers that must be refused before anything else is looked at.
UNAUTHENTICATED_CALLERS = ("anonymous", "wrong key", "malformed key", "operator token", "revoked key",
                           "disabled key", "expired key", "deleted owner's key")


@dataclass
class Matrix:
    """The state of one run: the door, Alice (who calls) and Bob (whose resources Alice names), the outcomes."""

    door: Door
    alice: Tenant
    bob: Tenant
    region: str
    holders: dict[str, Holder] = field(default_factory=dict)  # caller name -> its namespace permission
    doomed_namespaces: list[str] = field(default_factory=list)
    attribute: str | None = None  # the custom search attribute of Alice's namespace, once one was added
    retention: int = 1
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    problems: list[str] = field(default_factory=list)

    async def call(self, method: str, request: Message, token: str | None) -> Outcome:
        outcome = await self.door.call(method, request, token)
        self.calls += 1
        self.outcomes[outcome.code.name] += 1
        if outcome.code != Code.OK and not outcome.message:
            self.problems.append(f"{method}: {outcome.code.name} without a message")
        return outcome

    def next_retention(self) -> int:
        self.retention = 2 if self.retention == 1 else 1
        return self.retention

    async def fresh(self, kind: str) -> str:
        """A new resource of Alice's, made by her account key, for a call that will destroy it."""
        token = self.alice.token
        if kind == "namespace":
            if self.doomed_namespaces:
                doomed = self.doomed_namespaces.pop()
                await self.settle(doomed)  # made up front: its provisioning may still run
                return doomed
            return (await new_namespace(self.door, token, "mxd-"))[0]
        if kind == "key_id":
            return (await new_key(self.door, token))[0]
        if kind == "user_id":
            return (await new_user(self.door, token))[0]
        if kind == "service_account_id":
            return await new_service_account(self.door, token)
        raise AssertionError(f"the matrix cannot make a {kind} to destroy")

    async def grant(self, holder: Holder, namespace: str) -> None:
        """Give ``holder`` its permission on ``namespace`` too (Alice's account key)."""
        access = NamespaceAccess(permission=PERMISSIONS[holder.permission])
        if holder.kind == "user":
            await self.door.ok("SetUserNamespaceAccess", SetUserNamespaceAccessRequest(
                namespace=namespace, user_id=holder.identity_id, access=access), self.alice.token)
        else:
            await self.door.ok("SetServiceAccountNamespaceAccess", SetServiceAccountNamespaceAccessRequest(
                namespace=namespace, service_account_id=holder.identity_id, access=access), self.alice.token)

    async def settle(self, namespace: str) -> None:
        """Wait until ``namespace`` is active (made, or an admin's update of an earlier cell finished)."""
        state = ResourceState.RESOURCE_STATE_UNSPECIFIED
        for _ in range(600):
            got = await self.door.ok("GetNamespace", GetNamespaceRequest(namespace=namespace), self.alice.token)
            assert isinstance(got, GetNamespaceResponse)
            state = got.namespace.state
            if state == ResourceState.RESOURCE_STATE_ACTIVE:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{namespace} never became active: {ResourceState.Name(state)}")


@pytest_asyncio.fixture(scope="module")
async def matrix(unthrottled_cloud_app: TestClient, operator_headers: dict[str, str], pool: asyncpg.Pool,
                 settings: Settings) -> AsyncIterator[Matrix]:
    door = door_of(unthrottled_cloud_app)
    alice = await make_tenant(unthrottled_cloud_app, door, operator_headers, pool, "galice", callers=True)
    bob = await make_tenant(unthrottled_cloud_app, door, operator_headers, pool, "gbob", callers=False)
    run = Matrix(door, alice, bob, settings.cloud_region)
    # Callers whose namespace permission, not their role, decides: a developer administering Alice's namespace,
    # a finance admin reading it.
    owner = await new_service_account(door, alice.token, "developer", {alice.namespace: "admin"})
    alice.callers["service account developer, namespace admin"] = (await new_key(door, alice.token, owner))[1]
    alice.roles["service account developer, namespace admin"] = "developer"
    run.holders["service account developer, namespace admin"] = Holder("admin", owner, "service_account")
    owner, _ = await new_user(door, alice.token, "finance_admin", {alice.namespace: "read"})
    alice.callers["user finance_admin, namespace reader"] = (await new_key(door, alice.token, owner, "user"))[1]
    alice.roles["user finance_admin, namespace reader"] = "finance_admin"
    run.holders["user finance_admin, namespace reader"] = Holder("read", owner, "user")
    deletions = sum(1 for who in alice.callers if expected("DeleteNamespace", run, who) == Code.OK)
    for _ in range(deletions):  # made up front, so that the cells need not wait for each one
        run.doomed_namespaces.append((await new_namespace(door, alice.token, "mxd-", wait=False))[0])
    yield run
    await door.close()


def refused_tokens(matrix: Matrix, operator_token: str) -> dict[str, str | None]:
    tokens: dict[str, str | None] = {"anonymous": None, "wrong key": "tcsk_000000000000_not-a-key",
                                     "malformed key": "not-a-key-at-all", "operator token": operator_token}
    tokens.update(matrix.alice.refused)
    assert set(tokens) == set(UNAUTHENTICATED_CALLERS)
    return tokens


def expected(method: str, matrix: Matrix, who: str, *, foreign: bool = False) -> Code:
    """What Alice's caller ``who`` must get from ``method`` on her own resources (``foreign``: as if it held no
    namespace permission, as on Bob's)."""
    if method not in cloud_grpc.METHODS:
        return Code.UNIMPLEMENTED
    rule = POLICY[method]
    if matrix.alice.roles[who] in rule.allowed:
        return Code.OK
    holder = None if foreign else matrix.holders.get(who)
    if rule.by_permission and holder and PERMISSION_RANK[holder.permission] >= PERMISSION_RANK[rule.by_permission]:
        return Code.OK
    return Code.PERMISSION_DENIED


def _without(text: str, ids: tuple[str, ...]) -> str:
    for value in sorted(ids, key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


async def test_every_method_answers_each_caller_as_the_policy_says(matrix: Matrix, operator_headers: dict[str, str],
                                                                  figures: Figures) -> None:
    methods = [m.name for m in cloud_grpc.DESCRIPTOR.methods]
    untaught = sorted(set(cloud_grpc.METHODS) - set(POLICY))
    assert not untaught, f"the matrix cannot fill a request for {untaught}: add a Rule for each to POLICY"
    assert set(cloud_grpc.METHODS) <= set(methods) and len(methods) >= 70
    alice, bob = matrix.alice, matrix.bob
    refused = refused_tokens(matrix, operator_headers["Authorization"].removeprefix("Bearer "))
    own, theirs = Target.of(alice), Target.of(bob)
    bob_ids = tuple(bob.ids())
    cells = cross = 0
    for method in methods:
        rule = POLICY.get(method)
        implemented = method in cloud_grpc.METHODS
        plain = request_class(method)()
        for who, token in refused.items():
            request = await rule.build(Fill(matrix, own, effective=False)) if implemented and rule else plain
            outcome = await matrix.call(method, request, token)
            cells += 1
            if outcome.code != Code.UNAUTHENTICATED:
                matrix.problems.append(f"{method} as {who}: {outcome.code.name} {outcome.message!r}")
        for who, token in alice.callers.items():
            role = alice.roles[who]
            want = expected(method, matrix, who)
            by_permission = want == Code.OK and expected(method, matrix, who, foreign=True) != Code.OK
            request = await rule.build(Fill(matrix, own, effective=want == Code.OK,
                                            holder=matrix.holders[who] if by_permission else None)) \
                if implemented and rule else plain
            outcome = await matrix.call(method, request, token)
            cells += 1
            if outcome.code != want:
                matrix.problems.append(f"{method} as {who} ({role}): {outcome.code.name} {outcome.message!r}, "
                                       f"want {want.name}")
            elif outcome.code == Code.OK and any(v.encode() in outcome.answer for v in bob_ids):
                matrix.problems.append(f"{method} as {who} shows Bob's ids")
            if not (implemented and rule and rule.names_resource):
                continue
            # Bob's resources, then ones that do not exist: the same answer, but for the id.
            foreign = await matrix.call(method, await rule.build(Fill(matrix, theirs, effective=False)), token)
            absent = await matrix.call(method, await rule.build(Fill(matrix, theirs.nowhere(), effective=False)),
                                       token)
            cells += 2
            cross += 1
            allowed = {rule.foreign} if expected(method, matrix, who, foreign=True) == Code.OK \
                else {Code.PERMISSION_DENIED, Code.NOT_FOUND, rule.foreign}
            if foreign.code not in allowed or foreign.code != absent.code or \
                    _without(foreign.message, theirs.ids()) != _without(absent.message, theirs.nowhere().ids()):
                matrix.problems.append(
                    f"{method} as {who} ({role}) on Bob's: {foreign.code.name} {foreign.message!r}; on nothing: "
                    f"{absent.code.name} {absent.message!r}; want one of {sorted(c.name for c in allowed)}, alike")
    figures.add("Cloud Ops gRPC matrix cells checked", cells)
    callers = len(refused) + len(alice.callers)
    shape = f"{len(methods)} methods ({len(cloud_grpc.METHODS)} implemented) x {callers} callers"
    statuses = ", ".join(f"{code} {n}" for code, n in matrix.outcomes.most_common())
    figures.set("Cloud Ops gRPC matrix", f"{shape}, {matrix.calls} calls, {cross} cross-account cells")
    figures.set("Cloud Ops gRPC matrix statuses", statuses)
    print(f"Cloud Ops gRPC matrix: {shape}, {matrix.calls} calls, {cells} cells, {cross} cross-account; {statuses}")
    assert matrix.problems == [], "\n".join(matrix.problems)
    await _unchanged(matrix)


async def _unchanged(matrix: Matrix) -> None:
    """Bob's resources are as they were; Alice's changed only by the calls the policy let through."""
    alice, bob = matrix.alice, matrix.bob
    door = matrix.door
    got = await door.ok("GetNamespace", GetNamespaceRequest(namespace=bob.namespace), bob.token)
    assert isinstance(got, GetNamespaceResponse)
    assert (got.namespace.state, got.namespace.spec.retention_days) == (ResourceState.RESOURCE_STATE_ACTIVE, 1)
    user = await door.ok("GetUser", GetUserRequest(user_id=bob.user_id), bob.token)
    assert isinstance(user, GetUserResponse) and user.user.resource_version == "1"
    sa = await door.ok("GetServiceAccount", GetServiceAccountRequest(service_account_id=bob.service_account_id),
                       bob.token)
    assert isinstance(sa, GetServiceAccountResponse) and sa.service_account.resource_version == "1"
    key = await door.call("GetApiKey", GetApiKeyRequest(key_id=bob.key_id), bob.token)
    assert key.code == Code.OK, key
    # Alice's user and service account: one version per change the policy allows (Update…, Set…NamespaceAccess).
    admins = sum(1 for role in alice.roles.values() if role in ADMINS)
    assert POLICY["UpdateUser"].by_permission is None and POLICY["SetUserNamespaceAccess"].by_permission is None
    user = await door.ok("GetUser", GetUserRequest(user_id=alice.user_id), alice.token)
    assert isinstance(user, GetUserResponse) and user.user.resource_version == str(1 + 2 * admins), user
    sa = await door.ok("GetServiceAccount", GetServiceAccountRequest(service_account_id=alice.service_account_id),
                       alice.token)
    assert isinstance(sa, GetServiceAccountResponse)
    assert sa.service_account.resource_version == str(1 + 2 * admins), sa


# A suspended account reads (GetX) but changes nothing (PERMISSION_DENIED), except what these methods do anyway
# (UpdateApiKey and Set*NamespaceAccess that only take access away: tests/test_cloud_identities.py).
SUSPENDED_MAY = {
    "DeleteApiKey",  # revoking a credential is never refused
    "DeleteUser", "DeleteServiceAccount",  # nor taking someone's access away
    "CreateBillingReport",  # a report reads usage: a customer who must pay needs it
}


async def test_a_suspended_account_reads_but_changes_nothing(matrix: Matrix, unthrottled_cloud_app: TestClient,
                                                            operator_headers: dict[str, str], pool: asyncpg.Pool,
                                                            figures: Figures) -> None:
    carol = await make_tenant(unthrottled_cloud_app, matrix.door, operator_headers, pool, "gcarol", callers=False)
    resp = await unthrottled_cloud_app.post(f"/admin/accounts/{carol.account.id}/suspend", headers=operator_headers,
                                            json={"reason": "matrix"})
    assert resp.status == 200, await resp.text()
    target = Target.of(carol)
    problems, calls = [], 0
    deletes = sorted(m for m in cloud_grpc.METHODS if m.startswith("Delete"))
    for step, methods in enumerate((sorted(set(cloud_grpc.METHODS) - set(deletes)), deletes)):
        for method in methods:
            want = Code.OK if method.startswith("Get") or method in SUSPENDED_MAY else Code.PERMISSION_DENIED
            request = await POLICY[method].build(Fill(matrix, target, effective=False))
            outcome = await matrix.door.call(method, request, carol.token)
            calls += 1
            if outcome.code != want:
                problems.append(f"{method} in a suspended account: {outcome.code.name} {outcome.message!r}, "
                                f"want {want.name}")
        if step == 0:  # nothing changed before the deletes
            user = await matrix.door.ok("GetUser", GetUserRequest(user_id=carol.user_id), carol.token)
            assert isinstance(user, GetUserResponse) and user.user.resource_version == "1"
    figures.add("Cloud Ops gRPC matrix cells checked", calls)
    assert problems == [], "\n".join(problems)
    got = await matrix.door.ok("GetNamespace", GetNamespaceRequest(namespace=carol.namespace), carol.token)
    assert isinstance(got, GetNamespaceResponse)
    assert (got.namespace.state, got.namespace.spec.retention_days) == (ResourceState.RESOURCE_STATE_ACTIVE, 1)


def test_the_policy_knows_every_role_and_agrees_with_the_product() -> None:
    """The roles here are the product's; and the product's table says of each role what this matrix expects
    (so that a method whose implementation checks the product's table is expected to answer as that table says)."""
    assert set(EVERYONE) == set(access.ACCOUNT_ROLES), "a new account role: teach POLICY what it may do"
    said: dict[str, frozenset[str]] = {
        "namespace.read": READERS, "namespace.create": NAMESPACE_MAKERS, "namespace.write": ADMINS,
        "namespace.tag": ADMINS, "identity.read": READERS, "identity.write": ADMINS, "billing.read": BILLING}
    for action in get_args(access.Action):
        assert action in said, f"a new action {action}: say here which roles a customer expects it of"
        assert {r for r in access.ACCOUNT_ROLES if access.may(r, action)} == said[action], action
