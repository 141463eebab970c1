"""Repeated authentication failures are slowed down per client address (api/throttle.py, api/auth.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.throttle import FailureThrottle
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import create_account
from tests.figures import Figures

LIMIT = 5
WINDOW = 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_and_clients_are_counted_apart() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(limit=3, window_seconds=10, clock=clock)
    for _ in range(2):
        throttle.record_failure("10.0.0.1")
        clock.now += 1
    assert throttle.retry_after("10.0.0.1") is None
    throttle.record_failure("10.0.0.1")  # third failure at t=1002: blocked until the first (t=1000) is 10 s old
    assert throttle.retry_after("10.0.0.1") == 8
    assert throttle.retry_after("10.0.0.2") is None
    clock.now = 1010.5
    assert throttle.retry_after("10.0.0.1") is None  # the first failure left the window
    clock.now = 1100
    assert throttle.retry_after("10.0.0.1") is None and throttle._failures == {}


@pytest_asyncio.fixture(scope="module")
async def strict_api(settings: Settings) -> AsyncIterator[TestClient]:
    """The API with a tight limit; one proxy hop trusted so tests can speak as several client addresses."""
    strict = settings.model_copy(update={"auth_failure_limit": LIMIT, "auth_failure_window_seconds": WINDOW,
                                         "api_trusted_proxy_hops": 1})
    async with harness.api_client(strict) as client:
        yield client


def _as(address: str, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"203.0.113.9, {address}"}


async def test_failures_from_one_address_answer_429_then_recover(strict_api: TestClient,
                                                                  operator_headers: dict[str, str],
                                                                  figures: Figures) -> None:
    account = await create_account(strict_api, operator_headers, prefix="thr")
    attacker, bystander = "198.51.100.7", "198.51.100.8"
    wrong = account.token[:-4] + ("AAAA" if not account.token.endswith("AAAA") else "BBBB")
    for _ in range(LIMIT):
        resp = await strict_api.get("/cloud/account", headers=_as(attacker, wrong))
        assert resp.status == 401, await resp.text()
    # Now even the right key (and the operator token) is refused from that address, with JSON and a wait.
    for path, token in (("/cloud/account", account.token), ("/admin/accounts", operator_headers["Authorization"][7:])):
        resp = await strict_api.get(path, headers=_as(attacker, token))
        body = await resp.json()
        assert resp.status == 429, body
        assert body["message"].startswith("too many failed authentications")
        assert 1 <= body["details"]["retryAfterSeconds"] <= WINDOW
        assert resp.headers["Retry-After"] == str(body["details"]["retryAfterSeconds"])
    figures.add("auth failures slowed down", 1)
    # Another address is not affected.
    resp = await strict_api.get("/cloud/account", headers=_as(bystander, account.token))
    assert resp.status == 200, await resp.text()
    # Once the failures leave the window the right key works again from the attacker's address.
    for _ in range(100):
        resp = await strict_api.get("/cloud/account", headers=_as(attacker, account.token))
        if resp.status != 429:
            break
        await asyncio.sleep(0.1)
    assert resp.status == 200, await resp.text()


async def test_wrong_operator_tokens_count_too(strict_api: TestClient) -> None:
    address = "198.51.100.20"
    for _ in range(LIMIT):
        resp = await strict_api.get("/admin/accounts", headers=_as(address, "not-the-operator-token"))
        assert resp.status == 403
    resp = await strict_api.get("/admin/accounts", headers=_as(address, "not-the-operator-token"))
    assert resp.status == 429 and (await resp.json())["code"] == 429


async def test_the_default_limit_is_generous(api: TestClient) -> None:
    """The module's ordinary API (default settings): a few dozen bad keys from one address are only 401s."""
    for _ in range(30):
        resp = await api.get("/cloud/account", headers={"Authorization": "Bearer tcsk_000000000000_nope"})
        assert resp.status == 401
