"""Debian's Chromium driven by Playwright (never `playwright install`), with screenshots kept as artifacts."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run ./deploy.sh local, which installs it")
    return path


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def portal_sign_in(page: Page, api: TestClient, token: str) -> None:
    """Open the portal and sign in with an API key; returns once the namespaces view (the landing page) is drawn."""
    await page.goto(str(api.make_url("/")))
    await page.fill("#api-key", token)
    await page.click("form[data-testid=signin] button[type=submit]")
    await page.wait_for_selector("form[data-testid=create-namespace]", timeout=15000)


async def console_sign_in(page: Page, api: TestClient, operator_headers: dict[str, str]) -> None:
    """Open the operator console and sign in with the operator token; returns once the accounts are listed."""
    await page.goto(str(api.make_url("/console")))
    await page.fill("#operator-token", operator_headers["Authorization"].split(" ", 1)[1])
    await page.click("form[data-testid=signin] button[type=submit]")
    await page.locator("[data-testid=accounts], [data-testid=empty]").first.wait_for(timeout=15000)
