"""The line board in Chromium, fed live by the simulated demo line through linemon.

The board opens with a kiosk key in the URL, shows every machine, follows a stop the
simulator makes, and says STALE when the API goes quiet (then recovers on its own).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import OpenPage
from tests.browser.stack import LivePlant, live_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

MACHINES = {"press-1": "Press 1", "weld-1": "Welder 1", "paint-1": "Paint booth 1",
            "inspect-1": "Inspection 1", "pack-1": "Packer 1"}
# Reconnecting after the API comes back, and the browser's own report of it.
SOCKET_ERRORS = ("WebSocket connection to", "ERR_CONNECTION_REFUSED")


def board_url(live: LivePlant, key: str | None = None) -> str:
    return f"http://{live.web.host}/board/line-1?key={key or live_key('kiosk-line-1')}"


def tile(page: Page, machine: str):
    return page.locator(f'.tile[data-machine="{machine}"]')


async def test_board_shows_every_machine_live(live: LivePlant, open_page: OpenPage) -> None:
    page, _ = await open_page(live.web.host, 1920, 1080)
    await page.goto(board_url(live))
    await expect(page.locator(".tile")).to_have_count(len(MACHINES))
    for machine, name in MACHINES.items():
        await expect(tile(page, machine).locator(".tile-name")).to_have_text(name)
        await expect(tile(page, machine)).to_have_attribute(
            "data-state", re.compile("^(running|idle)$"))  # live: not offline any more
    await expect(page.locator("#line-name")).to_have_text("Assembly Line 1")
    await expect(page.locator("#stale")).to_be_hidden()
    await expect(page.locator("#age")).to_have_class(re.compile(r"\bfresh\b"))
    # Time in state runs on the wall between pushes.
    clock = tile(page, "press-1").locator(".tile-time")
    before = await clock.inner_text()
    await expect(clock).not_to_have_text(before)


async def test_a_stopped_machine_turns_its_tile_red(live: LivePlant,
                                                   open_page: OpenPage) -> None:
    page, _ = await open_page(live.web.host, 1920, 1080)
    await page.goto(board_url(live))
    press = tile(page, "press-1")
    await expect(press).to_have_attribute("data-state", "running")
    await live.plant.stop_machine("press-1", reason=17, for_s=6)
    await expect(press).to_have_attribute("data-state", "down")
    await expect(press).to_have_class(re.compile(r"\btone-down\b"))
    await expect(press.locator(".tile-state")).to_have_text("Down")
    await expect(press.locator(".tile-reason")).to_have_text("17 · Jam")
    await expect(page.locator("#alerts")).to_contain_text("Press 1")  # the stop alert
    await expect(press).to_have_attribute("data-state", "running")  # and back


async def test_board_goes_stale_when_the_api_stops_and_recovers(
        live: LivePlant, open_page: OpenPage) -> None:
    page, _ = await open_page(live.web.host, 1920, 1080, expected_console=SOCKET_ERRORS)
    await page.goto(board_url(live))
    await expect(page.locator(".tile")).to_have_count(len(MACHINES))
    await expect(page.locator("#stale")).to_be_hidden()
    await live.web.stop()
    try:
        await expect(page.locator("#stale")).to_be_visible()
        await expect(page.locator("#stale-word")).to_have_text("STALE")
        await expect(page.locator("#stale-detail")).to_have_text(
            re.compile(r"^last update 00:\d\d ago$"))
        await expect(page.locator("body")).to_have_class(re.compile(r"\bstale\b"))
    finally:
        await live.web.start()  # same port: the board reconnects by itself
    await expect(page.locator("#stale")).to_be_hidden(timeout=40_000)
    await expect(page.locator("body")).not_to_have_class(re.compile(r"\bstale\b"))


async def test_a_refused_key_is_said_on_the_board(live: LivePlant, open_page: OpenPage
                                                 ) -> None:
    page, _ = await open_page(live.web.host, 1920, 1080,
                              expected_console=(*SOCKET_ERRORS, "401"))
    await page.goto(board_url(live, key="not-a-key-of-this-plant"))
    await expect(page.locator("#notice")).to_be_visible()
    await expect(page.locator("#notice-detail")).to_have_text("401: unknown API key")
    await expect(page.locator("#stale-word")).to_have_text("NO DATA YET")
