"""The portal in real Chromium: a wrong API key shows an error, never a blank page."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.browser import browser, screenshot


async def test_wrong_key_shows_an_error(api: TestClient) -> None:
    async with browser() as b:
        page = await b.new_page()
        await page.goto(str(api.make_url("/")))
        await page.fill("#api-key", "tcsk_000000000000_not-a-real-key")
        await page.click("form[data-testid=signin] button[type=submit]")
        error = page.locator("[data-testid=error]")
        await error.wait_for(state="visible", timeout=15000)
        assert "not valid" in (await error.inner_text())
        await screenshot(page, "portal-wrong-key")


async def test_chart_library_is_served(api: TestClient) -> None:
    resp = await api.get("/vendor/chart.umd.min.js")
    assert resp.status == 200
    assert "Chart" in (await resp.text())[:5000]
