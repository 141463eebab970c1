"""A namespace's custom search attributes through Temporal's own ``CloudOperationsClient``, end to end: the spec's
attributes are registered on the real Temporal server by the provisioning and update workflows (operator service
``AddSearchAttributes`` on the internal frontend), then a workflow in the namespace is found by one of them."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.api.cloud.cloudservice.v1 import (
    CreateNamespaceRequest,
    GetNamespaceRequest,
    RenameCustomSearchAttributeRequest,
    UpdateNamespaceRequest,
)
from temporalio.api.cloud.namespace.v1 import Namespace, NamespaceSpec
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, CloudOperationsClient
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCStatusCode

from tcloud.settings import Settings
from tests import cloud_support
from tests.accounts_fixtures import TestAccount, unique
from tests.cloud_support import finished, refused

cloud_app, target = cloud_support.cloud_app, cloud_support.target  # the module's fixtures

FULFILLED = AsyncOperation.STATE_FULFILLED
KEYWORD, DOUBLE = NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_KEYWORD, NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_DOUBLE
INT, TEXT = NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_INT, NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_TEXT


account, ops = cloud_support.account_fixtures("sattr")


async def on_server(settings: Settings, namespace: str) -> dict[str, IndexedValueType.ValueType]:
    """The namespace's custom search attributes as the Temporal server lists them."""
    client = await Client.connect(settings.temporal_address)
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    return dict(listed.custom_attributes)


async def get(ops: CloudOperationsClient, namespace: str) -> Namespace:
    return (await ops.cloud_service.get_namespace(GetNamespaceRequest(namespace=namespace))).namespace


async def test_search_attributes_are_registered_on_the_server_at_creation_and_update(
        ops: CloudOperationsClient, settings: Settings) -> None:
    cloud = ops.cloud_service
    created = await cloud.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(
        name=unique("sa-"), retention_days=1, custom_search_attributes={"CustomerId": "Keyword", "Amount": "double"})))
    ns = created.namespace
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    assert await on_server(settings, ns) == {"CustomerId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                                             "Amount": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE}
    got = await get(ops, ns)
    assert dict(got.spec.search_attributes) == {"CustomerId": KEYWORD, "Amount": DOUBLE}
    assert dict(got.spec.custom_search_attributes) == {"CustomerId": "Keyword", "Amount": "Double"}

    # A workflow in the namespace carries one and is found by it (the server's SQL visibility indexes it).
    client = await Client.connect(settings.temporal_address, namespace=ns)
    key = SearchAttributeKey.for_keyword("CustomerId")
    customer = f"c-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("NoWorkerRunsThis", id=unique("wf-"), task_queue=unique("nobody-"),
                                         search_attributes=TypedSearchAttributes([SearchAttributePair(key, customer)]))
    deadline = asyncio.get_running_loop().time() + 30
    while not [w async for w in client.list_workflows(f'CustomerId = "{customer}"')]:
        assert asyncio.get_running_loop().time() < deadline, "the workflow was not found by its search attribute"
        await asyncio.sleep(0.3)
    await handle.terminate()

    # An update adds one (the spec repeats the others: attributes are never removed), through the workflow.
    updated = await cloud.update_namespace(UpdateNamespaceRequest(
        namespace=ns, resource_version=got.resource_version, spec=NamespaceSpec(
            name=got.spec.name, retention_days=1,
            search_attributes={**got.spec.search_attributes, "Priority": INT})))
    assert (await finished(ops, updated.async_operation.id)).state == FULFILLED
    assert (await on_server(settings, ns))["Priority"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    after = await get(ops, ns)
    assert dict(after.spec.search_attributes) == {"CustomerId": KEYWORD, "Amount": DOUBLE, "Priority": INT}

    # A spec without attributes leaves them; one that drops or retypes one is refused before anything starts.
    retention = await cloud.update_namespace(UpdateNamespaceRequest(
        namespace=ns, spec=NamespaceSpec(retention_days=2)))
    assert (await finished(ops, retention.async_operation.id)).state == FULFILLED
    assert dict((await get(ops, ns)).spec.search_attributes) == dict(after.spec.search_attributes)
    for attributes in ({"CustomerId": KEYWORD, "Amount": DOUBLE},
                       {"CustomerId": TEXT, "Amount": DOUBLE, "Priority": INT}):
        err = await refused(cloud.update_namespace(UpdateNamespaceRequest(
            namespace=ns, spec=NamespaceSpec(search_attributes=attributes))))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, attributes
    assert (await get(ops, ns)).state == after.state

    # A rename keeps the values indexed: the workflow is found by the new name.
    current = await get(ops, ns)
    renamed = await cloud.rename_custom_search_attribute(RenameCustomSearchAttributeRequest(
        namespace=ns, existing_custom_search_attribute_name="CustomerId", new_custom_search_attribute_name="ClientId",
        resource_version=current.resource_version))
    assert (await finished(ops, renamed.async_operation.id)).state == FULFILLED
    listed = await on_server(settings, ns)
    assert listed.get("ClientId") == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD and "CustomerId" not in listed
    assert dict((await get(ops, ns)).spec.search_attributes) == {"ClientId": KEYWORD, "Amount": DOUBLE,
                                                                 "Priority": INT}
    assert [w.id async for w in client.list_workflows(f'ClientId = "{customer}"')] == [handle.id]
    for existing, new in (("CustomerId", "Other"), ("ClientId", "Amount"), ("ClientId", "TemporalX")):
        err = await refused(cloud.rename_custom_search_attribute(RenameCustomSearchAttributeRequest(
            namespace=ns, existing_custom_search_attribute_name=existing, new_custom_search_attribute_name=new)))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, (existing, new)


async def test_every_type_is_registered(ops: CloudOperationsClient, settings: Settings) -> None:
    kinds = ("Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList")
    created = await ops.cloud_service.create_namespace(CreateNamespaceRequest(spec=NamespaceSpec(
        name=unique("saall-"), retention_days=1, custom_search_attributes={f"My{k}": k for k in kinds})))
    assert (await finished(ops, created.async_operation.id)).state == FULFILLED
    listed = await on_server(settings, created.namespace)
    assert {name: IndexedValueType.Name(kind) for name, kind in listed.items()} == {
        f"My{k}": f"INDEXED_VALUE_TYPE_{k.upper() if k != 'KeywordList' else 'KEYWORD_LIST'}" for k in kinds}


async def test_bad_search_attributes_are_refused_and_reserve_nothing(ops: CloudOperationsClient,
                                                                    account: TestAccount) -> None:
    cloud = ops.cloud_service
    for spec in (NamespaceSpec(custom_search_attributes={"Amount": "Money"}),
                 NamespaceSpec(custom_search_attributes={"TemporalThing": "Keyword"}),
                 NamespaceSpec(custom_search_attributes={"has space": "Keyword"}),
                 NamespaceSpec(custom_search_attributes={"Amount": "Int"}, search_attributes={"Amount": DOUBLE}),
                 NamespaceSpec(search_attributes={"Amount": NamespaceSpec.SEARCH_ATTRIBUTE_TYPE_UNSPECIFIED})):
        spec.name, spec.retention_days = unique("sabad-"), 1
        err = await refused(cloud.create_namespace(CreateNamespaceRequest(spec=spec)))
        assert err.status == RPCStatusCode.INVALID_ARGUMENT, spec
        err = await refused(cloud.get_namespace(GetNamespaceRequest(namespace=f"{spec.name}.{account.id}")))
        assert err.status == RPCStatusCode.NOT_FOUND
