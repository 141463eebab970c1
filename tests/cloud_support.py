"""What the Cloud Ops tests share: the API application serving both doors, Temporal's own client on it, and the
helpers that await an operation or a refusal. Import the fixtures into a test module to use them there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from temporalio.api.cloud.cloudservice.v1 import GetAsyncOperationRequest
from temporalio.api.cloud.operation.v1 import AsyncOperation
from temporalio.client import CloudOperationsClient
from temporalio.service import RPCError

from api.app import create_app
from api.appkeys import CLOUD_API
from tcloud.settings import Settings
from tests.accounts_fixtures import TestAccount, create_account


@pytest_asyncio.fixture(scope="module")
async def cloud_app(settings: Settings, worker: None) -> AsyncIterator[TestClient]:
    """The API application serving both doors: HTTP through this TestClient, gRPC on ``app[CLOUD_API].port``."""
    app = create_app(settings.model_copy(update={"cloud_api_port": 0}), cloud_api=True)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture(scope="module")
def target(cloud_app: TestClient) -> str:
    return f"127.0.0.1:{cloud_app.app[CLOUD_API].port}"


def account_fixtures(prefix: str, **client_options: Any) -> tuple[Any, Any]:
    """A module's ``account`` (a new account, ids starting ``prefix``) and ``ops`` (Temporal's client with its key)
    fixtures: ``account, ops = cloud_support.account_fixtures("tags")``."""

    @pytest_asyncio.fixture(scope="module")
    async def account(cloud_app: TestClient, operator_headers: dict[str, str]) -> TestAccount:
        return await create_account(cloud_app, operator_headers, prefix=prefix)

    @pytest_asyncio.fixture(scope="module")
    async def ops(target: str, account: TestAccount) -> CloudOperationsClient:
        return await cloud_client(target, account.token, **client_options)

    return account, ops


async def cloud_client(target: str, api_key: str | None, **kwargs: Any) -> CloudOperationsClient:
    return await CloudOperationsClient.connect(target_host=target, api_key=api_key, tls=False, **kwargs)


async def refused(call: Awaitable[Any]) -> RPCError:
    with pytest.raises(RPCError) as caught:
        await call
    return caught.value


async def finished(ops: CloudOperationsClient, operation_id: str, within: float = 90) -> AsyncOperation:
    """Poll GetAsyncOperation until the operation is no longer pending or in progress."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        op = (await ops.cloud_service.get_async_operation(
            GetAsyncOperationRequest(async_operation_id=operation_id))).async_operation
        if op.state not in (AsyncOperation.STATE_PENDING, AsyncOperation.STATE_IN_PROGRESS):
            return op
        assert asyncio.get_running_loop().time() < deadline, f"operation {operation_id} still {op.state}"
        await asyncio.sleep(0.2)
