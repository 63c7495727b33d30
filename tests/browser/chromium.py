"""Debian's Chromium, driven by Playwright; what a page loaded and what went wrong in it.

Playwright never downloads a browser here (`playwright install` is not used): it drives
the system's /usr/bin/chromium, which deploy/test-services.sh installs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

CHROMIUM = Path(os.environ.get("LINEMON_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def chromium_binary() -> str:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} not found; `make test` installs Debian's chromium "
                           "(deploy/test-services.sh), or set LINEMON_CHROMIUM")
    return str(CHROMIUM)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    binary = chromium_binary()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=binary, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """Everything a page did that a test should fail on: script errors, console errors,
    and any request that left linemon's own origin (plants are often offline)."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    expected_console: tuple[str, ...] = ()

    def attach(self, page: Page) -> PageWatch:
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)
        page.on("request", self._request)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" and not any(e in text for e in self.expected_console):
            self.errors.append(f"console: {text}")

    def _request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob"):
            return
        if f"{url.hostname}:{url.port}" != self.origin:
            self.foreign.append(request.url)

    def check(self) -> None:
        assert not self.foreign, f"requests outside linemon: {self.foreign}"
        assert not self.errors, "\n".join(self.errors)
