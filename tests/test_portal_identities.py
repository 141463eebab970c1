"""The portal's users and service accounts in Debian's Chromium, over the real API, worker, Temporal and Postgres.

An admin invites a user with namespace access, changes its role and access, creates a service account with a key
whose secret is shown once and works (the API, a data-plane token for its namespace only, that token on Temporal's
public door), disables, enables and deletes the key, and deletes both. A read-only user sees no management
controls, the API refuses it all the same, and when the API refuses a stale page its message is shown. The operator
console shows the account's users and service accounts.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Dialog, Page, expect
from temporalio.client import Client

from tests import harness
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique
from tests.browser import browser, console_sign_in, portal_sign_in, screenshot

pytestmark = pytest.mark.usefixtures("worker")
TIMEOUT = 30000  # the machine may be loaded: a redraw waits on the API, Postgres and Temporal


def accept_dialogs(page: Page) -> None:
    """Confirm every ``confirm()`` the page asks (deletes)."""
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()
    page.on("dialog", accept)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def api_json(api: TestClient, method: str, path: str, token: str, body: Any = None,
                   status: int = 200) -> Any:
    resp = await api.request(method, path, headers=bearer(token), json=body)
    assert resp.status == status, f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json()


async def user_by_email(api: TestClient, account: TestAccount, email: str) -> dict[str, Any]:
    users = (await api_json(api, "GET", f"/cloud/users?email={email}", account.token))["users"]
    assert len(users) == 1, users
    return dict(users[0])


def access_of(identity: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(account role, {namespace: permission}) of a user or service account in the API's JSON."""
    access = identity["spec"]["access"]
    return access["accountAccess"]["role"], {ns: a["permission"]
                                             for ns, a in access.get("namespaceAccesses", {}).items()}


async def make_identity(api: TestClient, account: TestAccount, role: str, *,
                        namespace_access: dict[str, str] | None = None) -> tuple[str, str, str]:
    """A user with ``role`` made through the API, and an API key of its own: (user id, email, key token)."""
    email = f"{unique('u')}@example.com"
    accesses = {ns: {"permission": p} for ns, p in (namespace_access or {}).items()}
    made = await api_json(api, "POST", "/cloud/users", account.token, {"spec": {"email": email, "access": {
        "accountAccess": {"role": role}, "namespaceAccesses": accesses}}})
    key = await api_json(api, "POST", "/cloud/api-keys", account.token,
                         {"spec": {"ownerId": made["userId"], "displayName": "own"}})
    return made["userId"], email, key["token"]


@pytest.fixture(scope="module")
async def customer(api: TestClient, operator_headers: dict[str, str]) -> tuple[TestAccount, str, str]:
    """An account (signed in with its first key, owned by its admin service account) and two active namespaces."""
    account = await create_account(api, operator_headers, prefix="pid")
    granted, _ = await create_namespace(api, account, unique("pidg-"))
    other, _ = await create_namespace(api, account, unique("pido-"))
    return account, granted, other


async def test_admin_manages_users_service_accounts_and_their_keys(
        api: TestClient, customer: tuple[TestAccount, str, str], temporal_server: harness.TemporalServer) -> None:
    account, granted, other = customer
    email = f"{unique('dev')}@example.com"
    async with browser() as b:
        page = await b.new_page(viewport={"width": 1200, "height": 900})
        accept_dialogs(page)
        await portal_sign_in(page, api, account.token)

        # Invite a read-only user with read access to one namespace, picked from the account's namespaces.
        await page.click("nav a[href='#/users']")
        form = page.locator("form[data-testid=create-users]")
        await form.wait_for(timeout=TIMEOUT)
        assert sorted(await page.locator("#user-namespace option").all_inner_texts()) == sorted(
            ["— none —", granted, other])
        await page.fill("#user-email", email)
        await page.select_option("#user-role", "ROLE_READ")
        await page.select_option("#user-namespace", granted)
        await page.select_option("#user-permission", "PERMISSION_READ")
        await form.locator("button[type=submit]").click()
        row = page.locator("[data-testid=users] tr", has_text=email)
        await expect(row).to_contain_text("Read-only", timeout=TIMEOUT)
        await expect(row).to_contain_text(f"{granted}: read")
        user = await user_by_email(api, account, email)
        assert access_of(user) == ("ROLE_READ", {granted: "PERMISSION_READ"})

        # Its page: make it a developer, give it write on the other namespace, admin on the first, then take the
        # other away again.
        await page.click(f"[data-testid='identity-{user['id']}']")
        await page.locator("form[data-testid=edit-identity]").wait_for(timeout=TIMEOUT)
        await page.select_option("#identity-role-select", "ROLE_DEVELOPER")
        await page.click("form[data-testid=edit-identity] button[type=submit]")
        await expect(page.locator("[data-testid=identity-role]")).to_have_text("Developer", timeout=TIMEOUT)
        assert access_of(await user_by_email(api, account, email)) == ("ROLE_DEVELOPER", {granted: "PERMISSION_READ"})
        await page.select_option("#grant-namespace", other)
        await page.select_option("#grant-permission", "PERMISSION_WRITE")
        await page.click("form[data-testid=grant-access] button[type=submit]")
        await expect(page.locator(f"[data-testid='permission-{other}']")).to_have_value("PERMISSION_WRITE",
                                                                                         timeout=TIMEOUT)
        await page.select_option(f"[data-testid='permission-{granted}']", "PERMISSION_ADMIN")
        await expect(page.locator("[data-testid=identity-status]")).to_contain_text(f"{granted} set to admin",
                                                                                    timeout=TIMEOUT)
        assert access_of(await user_by_email(api, account, email)) == (
            "ROLE_DEVELOPER", {granted: "PERMISSION_ADMIN", other: "PERMISSION_WRITE"})
        await page.click(f"button[aria-label='Remove access to {other}']")
        await expect(page.locator(f"[data-testid='permission-{other}']")).to_have_count(0, timeout=TIMEOUT)
        assert access_of(await user_by_email(api, account, email)) == ("ROLE_DEVELOPER", {granted: "PERMISSION_ADMIN"})
        await screenshot(page, "portal-user")

        # A service account with write on one namespace, and a key for it: the secret is shown once.
        sa_name = unique("ci-")
        await page.click("nav a[href='#/service-accounts']")
        await page.locator("form[data-testid=create-service-accounts]").wait_for(timeout=TIMEOUT)
        await page.fill("#sa-name", sa_name)
        await page.fill("#sa-description", "deploys from CI")
        await page.select_option("#sa-role", "ROLE_DEVELOPER")
        await page.select_option("#sa-namespace", granted)
        await page.select_option("#sa-permission", "PERMISSION_WRITE")
        await page.click("form[data-testid=create-service-accounts] button[type=submit]")
        link = page.locator("[data-testid=service-accounts] a", has_text=sa_name)
        await link.wait_for(timeout=TIMEOUT)
        await link.click()
        await page.fill("#identity-key-name", "deploy")
        await page.click("form[data-testid=create-identity-key] button[type=submit]")
        secret = await page.locator("[data-testid=new-key]").inner_text(timeout=TIMEOUT)
        assert secret.startswith("tcsk_")
        await expect(page.locator("[data-testid='key-state-deploy']")).to_have_text("enabled", timeout=TIMEOUT)
        await screenshot(page, "portal-service-account-key")
        sa_id = page.url.rsplit("/", 1)[1]
        assert sa_id.startswith("sa-")

        # The key acts as the service account: it lists namespaces, and gets a data-plane token for the namespace
        # it was given only, which Temporal's public door accepts.
        listed = await api_json(api, "GET", "/cloud/namespaces", secret)
        assert {n["namespace"] for n in listed["namespaces"]} == {granted, other}
        me = await api_json(api, "GET", "/cloud/current-identity", secret)
        assert me["serviceAccount"]["id"] == sa_id
        token = await api_json(api, "POST", f"/cloud/namespaces/{granted}/token", secret)
        assert token["role"] == "write"
        refused = await api_json(api, "POST", f"/cloud/namespaces/{other}/token", secret, status=403)
        assert other in refused["message"]
        tenant = await Client.connect(temporal_server.public_address, namespace=granted, api_key=token["token"],
                                      tls=False)
        assert [w async for w in tenant.list_workflows()] == []

        # Disabled, it authenticates nothing; enabled again, it works; deleted, it is gone.
        await page.click("button[aria-label='Disable deploy']")
        await expect(page.locator("[data-testid='key-state-deploy']")).to_have_text("disabled", timeout=TIMEOUT)
        await api_json(api, "GET", "/cloud/namespaces", secret, status=401)
        await page.click("button[aria-label='Enable deploy']")
        await expect(page.locator("[data-testid='key-state-deploy']")).to_have_text("enabled", timeout=TIMEOUT)
        await api_json(api, "GET", "/cloud/namespaces", secret)
        await page.click("button[aria-label='Delete key deploy']")
        await expect(page.locator("[data-testid='key-state-deploy']")).to_have_count(0, timeout=TIMEOUT)
        await api_json(api, "GET", "/cloud/namespaces", secret, status=401)

        # Shown once: back on the page, the secret is nowhere.
        await page.click("nav a[href='#/namespaces']")
        await page.goto(f"{api.make_url('/')}#/service-accounts/{sa_id}")
        await page.locator("form[data-testid=create-identity-key]").wait_for(timeout=TIMEOUT)
        assert secret not in await page.content()

        # Delete the service account from its page and the user from the list.
        await page.click(f"button[aria-label='Delete {sa_name}']")
        await page.locator("form[data-testid=create-service-accounts]").wait_for(timeout=TIMEOUT)
        sa_rows = page.locator("[data-testid=service-accounts] tr")
        await sa_rows.filter(has_text="account-admin").wait_for(timeout=TIMEOUT)
        await expect(sa_rows.filter(has_text=sa_name)).to_have_count(0)
        await api_json(api, "GET", f"/cloud/service-accounts/{sa_id}", account.token, status=404)
        await page.click("nav a[href='#/users']")
        await page.click(f"button[aria-label='Delete {email}']")
        await expect(page.locator("[data-testid=users] tr", has_text=email)).to_have_count(0, timeout=TIMEOUT)
        await api_json(api, "GET", f"/cloud/users/{user['id']}", account.token, status=404)


async def test_read_only_and_finance_callers_see_no_management_controls(
        api: TestClient, customer: tuple[TestAccount, str, str]) -> None:
    account, _, _ = customer
    reader_id, reader_email, reader_key = await make_identity(api, account, "ROLE_READ")
    _, _, finance_key = await make_identity(api, account, "ROLE_FINANCE_ADMIN")
    async with browser() as b:
        page = await b.new_page(viewport={"width": 1200, "height": 900})
        await portal_sign_in(page, api, reader_key)
        for section, testid in (("users", "users"), ("service-accounts", "service-accounts")):
            await page.click(f"nav a[href='#/{section}']")
            await page.locator(f"[data-testid={testid}]").wait_for(timeout=TIMEOUT)
            await expect(page.locator("[data-testid=read-only-note]")).to_be_visible(timeout=TIMEOUT)
            assert await page.locator("main form").count() == 0
            assert await page.locator("main button").count() == 0
        # The account-admin service account's page: its role and access, no controls, not its keys.
        await page.click(f"[data-testid='identity-sa-{account.id}']")
        await expect(page.locator("[data-testid=identity-role]")).to_have_text("Admin", timeout=TIMEOUT)
        await expect(page.locator("[data-testid=read-only-note]")).to_be_visible(timeout=TIMEOUT)
        assert await page.locator("main form, main button, main select").count() == 0
        assert "null" not in await page.locator("main").inner_text()
        await screenshot(page, "portal-users-read-only")

        # The API refuses the reader all the same, with a message that says why.
        refused = await api_json(api, "POST", "/cloud/users", reader_key, {"spec": {
            "email": f"{unique('x')}@example.com", "access": {"accountAccess": {"role": "ROLE_ADMIN"}}}}, status=403)
        assert refused["message"] == "the account role read does not allow identity.write"
        await api_json(api, "DELETE", f"/cloud/users/{reader_id}", reader_key, status=403)

        # A page drawn while its caller was an admin, used after it was made read-only: the API's refusal is shown.
        admin_id, admin_email, admin_key = await make_identity(api, account, "ROLE_ADMIN")
        stale = await b.new_page(viewport={"width": 1200, "height": 900})
        await portal_sign_in(stale, api, admin_key)
        await stale.click("nav a[href='#/users']")
        await stale.locator("form[data-testid=create-users]").wait_for(timeout=TIMEOUT)
        demoted = await user_by_email(api, account, admin_email)
        await api_json(api, "POST", f"/cloud/users/{admin_id}", account.token, {
            "spec": {"email": admin_email, "access": {"accountAccess": {"role": "ROLE_READ"}}},
            "resourceVersion": demoted["resourceVersion"]})
        await stale.fill("#user-email", f"{unique('late')}@example.com")
        await stale.click("form[data-testid=create-users] button[type=submit]")
        error = stale.locator("[data-testid=identity-status] [data-testid=error]")
        await expect(error).to_have_text("the account role read does not allow identity.write", timeout=TIMEOUT)
        # Redrawn after the refusal, the page follows the caller's new role; the message stays.
        await expect(stale.locator("[data-testid=read-only-note]")).to_be_visible(timeout=TIMEOUT)
        await expect(stale.locator("main form, main button")).to_have_count(0, timeout=TIMEOUT)
        await expect(error).to_be_visible()
        await screenshot(stale, "portal-users-refused")

        # finance_admin may not read identities at all: the API's message, and no controls.
        finance = await b.new_page(viewport={"width": 1200, "height": 900})
        await portal_sign_in(finance, api, finance_key)
        await finance.click("nav a[href='#/users']")
        await expect(finance.locator("[data-testid=error]")).to_have_text(
            "the account role finance_admin does not allow identity.read", timeout=TIMEOUT)
        assert await finance.locator("main form, main button").count() == 0
        assert reader_email not in await finance.content()


async def test_console_shows_the_accounts_users_and_service_accounts(
        api: TestClient, customer: tuple[TestAccount, str, str], operator_headers: dict[str, str]) -> None:
    account, granted, other = customer
    user_id, email, _ = await make_identity(api, account, "ROLE_DEVELOPER", namespace_access={
        granted: "PERMISSION_ADMIN", other: "PERMISSION_READ"})
    sa_name = unique("bot-")
    sa_id = (await api_json(api, "POST", "/cloud/service-accounts", account.token, {"spec": {
        "name": sa_name, "description": "nightly jobs", "access": {"accountAccess": {"role": "ROLE_READ"}}}}))[
        "serviceAccountId"]
    for name in ("one", "two"):
        made = await api_json(api, "POST", "/cloud/api-keys", account.token,
                              {"spec": {"ownerId": sa_id, "displayName": name}})
    await api_json(api, "POST", f"/cloud/api-keys/{made['keyId']}", account.token,
                   {"spec": {"displayName": "two", "disabled": True}})
    gone_id, gone_email, _ = await make_identity(api, account, "ROLE_READ")
    await api_json(api, "DELETE", f"/cloud/users/{gone_id}", account.token)

    async with browser() as b:
        page = await b.new_page(viewport={"width": 1200, "height": 900})
        await console_sign_in(page, api, operator_headers)
        await page.click(f"[data-testid='account-{account.id}']")
        await expect(page.locator("[data-testid=account-name]")).to_contain_text(account.id, timeout=TIMEOUT)
        users = page.locator("[data-testid=account-users]")
        await users.wait_for(timeout=TIMEOUT)
        row = users.locator("tr", has_text=email)
        await expect(row).to_contain_text("developer")
        await expect(row).to_contain_text(f"{granted}: admin")
        await expect(row).to_contain_text(f"{other}: read")
        await expect(page.locator(f"[data-testid='keys-{user_id}']")).to_have_text("1 active")
        await expect(page.locator(f"[data-testid='identity-state-{user_id}']")).to_have_text("active")
        await expect(page.locator(f"[data-testid='identity-state-{gone_id}']")).to_contain_text("deleted")
        await expect(users.locator("tr", has_text=gone_email)).to_have_count(1)
        sas = page.locator("[data-testid=account-service-accounts]")
        sa_row = sas.locator("tr", has_text=sa_name)
        await expect(sa_row).to_contain_text("nightly jobs")
        await expect(sa_row).to_contain_text("read")
        await expect(page.locator(f"[data-testid='keys-{sa_id}']")).to_have_text("1 active, 1 disabled")
        await expect(sas.locator("tr", has_text="account-admin")).to_contain_text("admin")
        # Read-only: nothing to press but the way back.
        assert await page.locator("main form, main button, main select, main input").count() == 0
        assert "null" not in await page.locator("main").inner_text()
        await screenshot(page, "console-account-identities")

    # The same through the operator route; a customer key cannot read it.
    listed = (await api.get(f"/admin/accounts/{account.id}/identities", headers=operator_headers))
    assert listed.status == 200
    body = await listed.json()
    assert {u["id"] for u in body["users"]} >= {user_id, gone_id}
    assert (await api.get(f"/admin/accounts/{account.id}/identities", headers=account.headers)).status == 403
    assert (await api.get("/admin/accounts/nosuchacct/identities", headers=operator_headers)).status == 404
