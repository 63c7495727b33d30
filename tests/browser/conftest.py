"""Fixtures for the browser tests: one headless Chromium per module, pages that fail the
test on a script error or on any request that leaves linemon, and the plants to serve.

Modules share their plant and browser (module event loop): starting a simulated line
or replaying an hour of history is the slow part, a new page is cheap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from api.app import create_app
from tests.api.conftest import running_plant
from tests.browser.chromium import PageWatch, chromium
from tests.browser.stack import LivePlant, Uvicorn, live_plant, serving

# Playwright's default is 5 s; a push a second and a reconnect back-off need a bit more.
expect.set_options(timeout=15_000)

OpenPage = Callable[..., Awaitable[tuple[Page, PageWatch]]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as found:
        yield found


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """open_page(host, width, height, key=None) -> (page, watch); checked at the end."""
    opened: list[tuple[Page, PageWatch]] = []

    async def open_(host: str, width: int, height: int, *, session_key: str | None = None,
                    expected_console: tuple[str, ...] = ()) -> tuple[Page, PageWatch]:
        context = await browser.new_context(viewport={"width": width, "height": height},
                                            timezone_id="UTC", locale="en-GB",
                                            accept_downloads=True)
        if session_key:  # as if typed into the key prompt earlier in this tab
            await context.add_init_script(
                f"sessionStorage.setItem('linemon.key', {session_key!r})")
        page = await context.new_page()
        page.set_default_timeout(15_000)
        watch = PageWatch(host, expected_console=expected_console).attach(page)
        opened.append((page, watch))
        return page, watch

    yield open_
    for page, watch in opened:
        await page.context.close()
        watch.check()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LivePlant]:
    """The demo line, simulated in real time, read by linemon, served by uvicorn."""
    async with live_plant(tmp_path_factory.mktemp("live")) as plant:
        yield plant


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Uvicorn]:
    """The API tests' plant (tests/api/plant.py: two lines, a scripted hour) on uvicorn."""
    async with running_plant(Path(tmp_path_factory.mktemp("history"))) as (lm, _clock), \
            serving(create_app(lm, manage=False)) as web:
        yield web
