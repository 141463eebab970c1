"""Customers in the Temporal UI, in Debian's Chromium: each signs in through our OpenID provider with an API key,
sees only their own namespaces, reads the history of a workflow their own worker ran, and gets the server's
permission error (and none of the data) on the other customer's namespace and workflow; signing out ends it. The
operators' UI, on the internal frontend, sees both. And what the UI server itself sends the provider (no PKCE).

Real parts: the UI server built from its module with its OIDC login on, the UI gateway in front of the official
server's public frontend (JWT authorization), the API as the provider, workers polling through the public door
with data-plane tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, BrowserContext, Page, Response
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from api import ui_gateway
from tcloud.settings import Settings
from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique
from tests.browser import browser, screenshot
from tests.oidc_support import UI_CLIENT, api_on, free_ports, oidc_settings, query_of, sign_in_page, user_with_key
from tests.usage_workload import TASK_QUEUE, run_workload, tenant_worker

pytestmark = pytest.mark.usefixtures("worker")

SIGN_IN_TIMEOUT = 30_000
# The server's words for a refused call, as the UI shows them where it prints an answer's message.
SERVER_MESSAGE = "Request unauthorized."
PERMISSION_ERROR = f"PermissionDenied: {SERVER_MESSAGE}"


@dataclass(frozen=True)
class Customer:
    account: TestAccount
    namespace: str
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class Platform:
    api: TestClient
    settings: Settings
    ui: str  # the customers' UI


@pytest.fixture(scope="module")
def ui_settings(settings: Settings) -> Settings:
    api_port, ui_port = free_ports(2)
    return oidc_settings(settings, api_port=api_port, ui_port=ui_port)


@pytest_asyncio.fixture(scope="module")
async def platform(ui_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """The API (the provider), the UI gateway and the customers' UI server, in that order."""
    async with api_on(ui_settings) as api, ui_gateway.serving(ui_settings, port=0) as gateway_port:
        ui = harness.CustomerUi(tmp_path_factory.mktemp("customer-ui"), ui_settings,
                                gateway_address=f"127.0.0.1:{gateway_port}")
        await asyncio.to_thread(ui.start)  # it reads the provider's discovery document from the API as it starts
        try:
            yield Platform(api, ui_settings, ui.url)
        finally:
            await asyncio.to_thread(ui.stop)


async def _customer(platform: Platform, operator_headers: dict[str, str], public_address: str,
                    prefix: str) -> Customer:
    """An account with a namespace, and a workflow its own worker ran there through the public frontend."""
    account = await create_account(platform.api, operator_headers, prefix=prefix)
    namespace, _ = await create_namespace(platform.api, account, unique(f"{prefix}-"))
    resp = await platform.api.post(f"/cloud/namespaces/{namespace}/token", headers=account.headers)
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["token"]
    client = await Client.connect(public_address, namespace=namespace, api_key=token, tls=False)
    async with tenant_worker(client):
        [handle] = await run_workload(client, prefix=f"order-{prefix}", completed=1, held=0)
    run_id = handle.result_run_id or (await handle.describe()).run_id
    return Customer(account, namespace, handle.id, run_id)


@pytest_asyncio.fixture(scope="module")
async def customers(platform: Platform, operator_headers: dict[str, str],
                    temporal_server: harness.TemporalServer) -> tuple[Customer, Customer]:
    return (await _customer(platform, operator_headers, temporal_server.public_address, "uia"),
            await _customer(platform, operator_headers, temporal_server.public_address, "uib"))


async def sign_in_through_provider(page: Page, platform: Platform, key: str) -> None:
    """The UI has sent the browser to our sign-in page: paste the key, come back signed in."""
    await page.wait_for_url(f"{platform.settings.oidc_issuer}/oauth2/authorize?*", timeout=SIGN_IN_TIMEOUT)
    await screenshot(page, "customer-ui-sign-in")
    await page.fill("#api-key", key)
    await page.click("form[data-testid=oidc-signin] button[type=submit]")
    await page.wait_for_url(f"{platform.ui}/**", timeout=SIGN_IN_TIMEOUT)


async def own_namespace_and_workflow(page: Page, platform: Platform, me: Customer, other: Customer,
                                     name: str) -> None:
    """Only my namespace is listed; my workflow's history is there."""
    await page.goto(f"{platform.ui}/namespaces")
    await page.get_by_text(me.namespace).first.wait_for(timeout=SIGN_IN_TIMEOUT)
    body = await page.content()
    assert other.namespace not in body and other.account.id not in body
    await screenshot(page, f"{name}-namespaces")

    await page.goto(f"{platform.ui}/namespaces/{me.namespace}/workflows")
    await page.get_by_text(me.workflow_id).first.wait_for(timeout=SIGN_IN_TIMEOUT)
    await page.get_by_role("link", name=me.workflow_id).first.click()
    await page.wait_for_url(f"**/workflows/{me.workflow_id}/{me.run_id}/**", timeout=SIGN_IN_TIMEOUT)
    await page.goto(f"{platform.ui}/namespaces/{me.namespace}/workflows/{me.workflow_id}/{me.run_id}/history")
    # The events the worker's run wrote, as the server answers them to this customer's token.
    for text in ("Workflow Execution Completed", "Activity Task Completed"):
        await page.get_by_text(text).first.wait_for(timeout=SIGN_IN_TIMEOUT)
    await page.get_by_text("greet").first.wait_for(timeout=SIGN_IN_TIMEOUT)
    await screenshot(page, f"{name}-history")


async def others_are_refused(page: Page, platform: Platform, other: Customer, name: str) -> None:
    """By URL, the other customer's namespace and workflow: the server's refusal, none of their data."""
    await page.goto(f"{platform.ui}/namespaces/{other.namespace}/workflows")
    await page.get_by_text(PERMISSION_ERROR).first.wait_for(timeout=SIGN_IN_TIMEOUT)
    assert other.workflow_id not in await page.content()
    await screenshot(page, f"{name}-other-namespace")

    # The workflow's page loads it with DescribeWorkflowExecution: the server's PermissionDenied comes back as it is,
    # HTTP 403 with the server's message, and the page shows that status (it prints no answer's message).
    describe = f"/api/v1/namespaces/{other.namespace}/workflows/{other.workflow_id}"

    def is_describe(response: Response) -> bool:
        return urlsplit(response.url).path == describe and response.request.method == "GET"

    async with page.expect_response(is_describe, timeout=SIGN_IN_TIMEOUT) as answer:
        await page.goto(f"{platform.ui}/namespaces/{other.namespace}/workflows/{other.workflow_id}/{other.run_id}"
                        "/history")
    refused = await answer.value
    assert refused.status == 403 and (await refused.json())["message"] == SERVER_MESSAGE
    await page.get_by_text("We are having technical difficulties retrieving this Workflow").wait_for(
        timeout=SIGN_IN_TIMEOUT)
    main = await page.locator("main").inner_text()
    assert "403" in main and "Forbidden" in main, main
    assert page.url.startswith(platform.ui), "still signed in: the refusal is not taken for a lapsed sign-in"
    # None of the other customer's workflow: its history, type, task queue, activities and their payloads.
    content = await page.content()
    for theirs in ("Workflow Execution Completed", "Activity Task", "TenantOrderWorkflow", TASK_QUEUE, "greet",
                   "hello a", "hello b"):
        assert theirs not in content, theirs
    assert other.run_id not in main
    await screenshot(page, f"{name}-other-workflow")


async def sign_out(page: Page, platform: Platform, me: Customer) -> None:
    """The UI's own sign-out: afterwards nothing opens without signing in again."""
    await page.goto(f"{platform.ui}/namespaces/{me.namespace}/workflows")
    await page.get_by_text(me.workflow_id).first.wait_for(timeout=SIGN_IN_TIMEOUT)
    await page.get_by_test_id("user-menu-trigger").first.click()
    await page.get_by_role("menuitem", name="Log out").first.click()
    await page.wait_for_url(f"{platform.settings.oidc_issuer}/oauth2/authorize?*", timeout=SIGN_IN_TIMEOUT)
    await page.goto(f"{platform.ui}/namespaces/{me.namespace}/workflows/{me.workflow_id}/{me.run_id}/history")
    await page.wait_for_url(f"{platform.settings.oidc_issuer}/oauth2/authorize?*", timeout=SIGN_IN_TIMEOUT)
    assert me.workflow_id not in await page.content()


async def start_waiting(platform: Platform, customer: Customer, public_address: str) -> WorkflowHandle[Any, Any]:
    """A workflow left running in the customer's namespace (no worker polls its task queue), started with a
    data-plane token of the account's own key."""
    resp = await platform.api.post(f"/cloud/namespaces/{customer.namespace}/token", headers=customer.account.headers)
    assert resp.status == 200, await resp.text()
    client = await Client.connect(public_address, namespace=customer.namespace, api_key=(await resp.json())["token"],
                                  tls=False)
    return await client.start_workflow("Waiting", id=unique("waiting-"), task_queue=unique("nobody-"))


async def new_context(chromium: Browser) -> BrowserContext:
    return await chromium.new_context(viewport={"width": 1300, "height": 900})


async def test_each_customer_sees_only_their_own_namespaces_and_workflows(
        platform: Platform, customers: tuple[Customer, Customer], temporal_server: harness.TemporalServer) -> None:
    a, b = customers
    async with browser() as chromium:
        # Customer A comes from the portal: its namespace links to its page in the customers' UI.
        context = await new_context(chromium)
        page = await context.new_page()
        await page.goto(str(platform.api.make_url("/")))
        await page.fill("#api-key", a.account.token)
        await page.click("form[data-testid=signin] button[type=submit]")
        link = page.locator(f"[data-testid='ui-link-{a.namespace}']")
        await link.wait_for(timeout=SIGN_IN_TIMEOUT)
        href = await link.get_attribute("href")
        assert href == f"{platform.ui}/namespaces/{a.namespace}/workflows"
        await screenshot(page, "customer-ui-portal-link")
        await page.goto(href)
        await sign_in_through_provider(page, platform, a.account.token)
        await page.get_by_text(a.workflow_id).first.wait_for(timeout=SIGN_IN_TIMEOUT)
        # The UI links back to the portal from its top bar.
        back = page.frame_locator("iframe[title='tcloud portal']").locator("[data-testid=portal-link]")
        assert await back.get_attribute("href") == f"{platform.settings.oidc_issuer}/#/namespaces"
        await own_namespace_and_workflow(page, platform, a, b, "customer-ui-a")
        await others_are_refused(page, platform, b, "customer-ui-a")
        await sign_out(page, platform, a)
        await context.close()

        # A colleague of A with read access to A's namespace signs in with their own key: as themselves, A's namespace
        # and its history; cancelling A's running workflow is the server's to refuse, and it does.
        _, email, key, _ = await user_with_key(platform.api, a.account, {a.namespace: "PERMISSION_READ"})
        context = await new_context(chromium)
        page = await context.new_page()
        await page.goto(f"{platform.ui}/namespaces/{a.namespace}/workflows")
        await sign_in_through_provider(page, platform, key)
        await own_namespace_and_workflow(page, platform, a, b, "customer-ui-a-reader")
        await page.get_by_test_id("user-menu-trigger").first.click()
        await page.get_by_text(email).first.wait_for(timeout=SIGN_IN_TIMEOUT)
        await screenshot(page, "customer-ui-a-reader-menu")
        await page.keyboard.press("Escape")
        running = await start_waiting(platform, a, temporal_server.public_address)
        await page.goto(f"{platform.ui}/namespaces/{a.namespace}/workflows/{running.id}/{running.result_run_id}"
                        "/history")
        await page.get_by_role("button", name="Request Cancellation").first.click()
        modal = page.get_by_test_id("cancel-confirmation-modal")
        await modal.get_by_role("button", name="Confirm").click()
        await modal.get_by_text(PERMISSION_ERROR).wait_for(timeout=SIGN_IN_TIMEOUT)
        await screenshot(page, "customer-ui-a-reader-cancel-refused")
        assert (await running.describe()).status == WorkflowExecutionStatus.RUNNING
        events = [e.event_type for e in (await running.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED not in events
        await running.terminate("the test is over")
        await context.close()

        # Customer B, the mirror image, starting at the UI's front page (it offers B's namespaces).
        context = await new_context(chromium)
        page = await context.new_page()
        await page.goto(platform.ui)
        await sign_in_through_provider(page, platform, b.account.token)
        await page.wait_for_url(f"{platform.ui}/select-namespace", timeout=SIGN_IN_TIMEOUT)
        await page.locator("main").get_by_role("combobox").click()
        options = page.locator("main").get_by_role("option")
        await options.first.wait_for(timeout=SIGN_IN_TIMEOUT)
        assert await options.all_inner_texts() == [b.namespace]
        await screenshot(page, "customer-ui-b-start")
        await options.first.click()
        await page.wait_for_url(f"{platform.ui}/namespaces/{b.namespace}/workflows*", timeout=SIGN_IN_TIMEOUT)
        await page.get_by_text(b.workflow_id).first.wait_for(timeout=SIGN_IN_TIMEOUT)
        await own_namespace_and_workflow(page, platform, b, a, "customer-ui-b")
        await others_are_refused(page, platform, a, "customer-ui-b")
        await sign_out(page, platform, b)
        await context.close()

        # The operators' UI (internal frontend, no sign-in) sees both customers' namespaces and workflows.
        context = await new_context(chromium)
        page = await context.new_page()
        await page.goto(f"{temporal_server.ui_url}/namespaces")
        for customer in (a, b):
            await page.get_by_text(customer.namespace).first.wait_for(timeout=SIGN_IN_TIMEOUT)
        for customer in (a, b):
            await page.goto(f"{temporal_server.ui_url}/namespaces/{customer.namespace}/workflows/"
                            f"{customer.workflow_id}/{customer.run_id}/history")
            await page.get_by_text("Workflow Execution Completed").first.wait_for(timeout=SIGN_IN_TIMEOUT)
        await screenshot(page, "customer-ui-operator")
        await context.close()


async def test_the_ui_server_sends_no_pkce_so_the_provider_holds_it_to_its_secret_and_nonce(
        platform: Platform) -> None:
    """The pinned UI server's own authorization request (what a browser is sent to): state and nonce, no PKCE, which
    no ui-server release up to v2.58.1 sends. The provider takes it because the UI is a confidential client asking
    for openid with a nonce (RFC 9700 §2.1.1); the day a UI server sends PKCE this fails, and the provider should
    then require it of this client."""
    async with aiohttp.ClientSession() as http, http.get(f"{platform.ui}/auth/sso", allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(f"{platform.settings.oidc_issuer}/oauth2/authorize?")
    sent = query_of(location)
    assert (sent["client_id"], sent["redirect_uri"], sent["response_type"]) == (
        UI_CLIENT, platform.settings.customer_ui_redirect_uris[0], "code")
    assert sent["state"] and sent["nonce"] and "openid" in sent["scope"].split()
    assert not {"code_challenge", "code_challenge_method"} & set(sent), "the UI server sends PKCE now: require it"
    status, _, fields = await sign_in_page(platform.api, sent)
    assert status == 200 and fields, "the provider takes the UI server's request"
    without_nonce = {k: v for k, v in sent.items() if k != "nonce"}
    for changed in (without_nonce, {**sent, "scope": "profile email"}):
        status, location, _ = await sign_in_page(platform.api, changed)
        assert status == 302 and query_of(location)["error"] == "invalid_request", location
