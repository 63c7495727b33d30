"""The supervisor's phone view in Chromium at 390x844, on the API tests' plant, where the
welder weld-a2 has been down since minute 60 (its stop alert is firing)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.api.plant import KEY
from tests.browser.conftest import OpenPage
from tests.browser.stack import Uvicorn

pytestmark = pytest.mark.asyncio(loop_scope="module")


def weld_alert(page: Page):
    return page.locator(".alert-card", has_text="weld-a2")


async def test_lines_and_alerts_fit_a_phone(history: Uvicorn, open_page: OpenPage) -> None:
    page, _ = await open_page(history.host, 390, 844, session_key=KEY["viewer"].key)
    await page.goto(f"http://{history.host}/phone")
    await expect(page.locator(".line-card")).to_have_count(2)
    line_a = page.locator('.line-card[data-line="line-a"]')
    await expect(line_a.locator(".line-state")).to_have_text("1/2 running · 1 down")
    await expect(line_a.locator('.chip[data-state="down"]')).to_have_text("weld-a2Down")
    await expect(weld_alert(page)).to_have_count(1)
    await expect(weld_alert(page).locator(".severity")).to_have_text("critical")
    # Nothing sticks out sideways on a 390 px screen.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390


async def test_a_viewer_cannot_acknowledge(history: Uvicorn, open_page: OpenPage) -> None:
    page, _ = await open_page(history.host, 390, 844, session_key=KEY["viewer"].key,
                              expected_console=("status of 403",))
    await page.goto(f"http://{history.host}/phone")
    await weld_alert(page).locator("button.ack").click()
    await expect(weld_alert(page).locator(".ack-error")).to_contain_text(
        "needs the supervisor role")
    assert history.app.state.linemon.engine.alerts.active()[0].acknowledged_by is None


async def test_a_supervisor_acknowledges_an_alert(history: Uvicorn,
                                                  open_page: OpenPage) -> None:
    page, _ = await open_page(history.host, 390, 844, expected_console=("status of 401",))
    await page.goto(f"http://{history.host}/phone")
    await page.locator("#key-dialog input[name=key]").fill(KEY["supervisor"].key)
    await page.locator("#key-dialog button[type=submit]").click()
    await weld_alert(page).locator("button.ack").click()
    await expect(weld_alert(page).locator(".acked")).to_contain_text(
        "Acknowledged by supervisor")
    await expect(weld_alert(page).locator("button.ack")).to_have_count(0)
    (alert,) = [a for a in history.app.state.linemon.engine.alerts.active()
                if a.labels.get("machine") == "weld-a2"]
    assert alert.acknowledged_by == "supervisor"
