"""Screenshots of the dashboards for docs/: `python -m tests.browser.screenshots [--out DIR]`.

The showcase plant (tests/browser/showcase.py) is replayed through a real linemon, served
by a real uvicorn and shot in Debian's Chromium at each page's target size:

    board.png     1920x1080  the line board on a TV
    explorer.png  1440x900   the downtime explorer on a laptop
    explorer-coding.png      the same, uncoded stops only, one being given a reason
    phone.png     390x844    the supervisor's phone (at 2x, as phones render)

The browser's clock is set to the plant's, so the clock, the shift and the ages agree.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import Browser, Page

from api.app import create_app
from tests.api.conftest import uvicorn_serving
from tests.browser.chromium import PageWatch, chromium
from tests.browser.showcase import NOW, key_of, play, showcase_linemon

DOCS = Path(__file__).resolve().parents[2] / "docs"
SHOTS = ("board", "explorer", "phone")


async def _page(browser: Browser, host: str, width: int, height: int, scale: float = 1,
                session_key: str | None = None) -> tuple[Page, PageWatch]:
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        device_scale_factor=scale, timezone_id="UTC",
                                        locale="en-GB")
    if session_key:  # what the key prompt would store
        await context.add_init_script(f"sessionStorage.setItem('linemon.key', '{session_key}')")
    page = await context.new_page()
    await page.clock.install(time=NOW)
    await page.clock.resume()  # time flows from the plant's NOW
    return page, PageWatch(host).attach(page)


async def board(browser: Browser, host: str, out: Path) -> None:
    page, watch = await _page(browser, host, 1920, 1080)
    await page.goto(f"http://{host}/board/line-1?key={key_of('board-line1')}")
    await page.locator("body:not(.stale) .tile[data-state]").first.wait_for()
    await page.locator("#stale").wait_for(state="hidden")
    await page.screenshot(path=out / "board.png")
    watch.check()


async def explorer(browser: Browser, host: str, out: Path) -> None:
    page, watch = await _page(browser, host, 1440, 900, session_key=key_of("maintenance"))
    await page.goto(f"http://{host}/explorer?line=line-1&range=shift")
    await page.locator("#downtime tbody tr").first.wait_for()
    await page.locator("#timeline[data-ready]").wait_for()
    await page.locator("#pareto[data-ready]").wait_for()
    await page.screenshot(path=out / "explorer.png")
    # The work list: uncoded stops only, one of them being coded.
    await page.locator("#sum-uncoded-card").click()
    uncoded = page.locator('#downtime[data-loaded*="uncoded_only=true"] tbody tr.is-uncoded')
    await uncoded.first.wait_for()
    await page.locator("#downtime tbody tr.is-uncoded .code-button").first.click()
    await page.locator("#code-dialog select[name=reason]").select_option("17")
    await page.locator("#code-dialog textarea[name=note]").fill("Part stuck in the outfeed")
    await page.locator(".table-panel").scroll_into_view_if_needed()
    await page.screenshot(path=out / "explorer-coding.png")
    watch.check()


async def phone(browser: Browser, host: str, out: Path) -> None:
    page, watch = await _page(browser, host, 390, 844, scale=2,
                              session_key=key_of("supervisor"))
    await page.goto(f"http://{host}/phone")
    await page.locator(".alert-card").first.wait_for()
    await page.locator(".line-card").first.wait_for()
    await page.screenshot(path=out / "phone.png")
    watch.check()


async def main(out: Path, only: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lm, clock = showcase_linemon(Path(tmp))
        await lm.historian.start()
        try:
            await play(lm, clock)
            app = create_app(lm, manage=False)
            async with uvicorn_serving(app) as (host, _), chromium() as browser:
                for name in only:
                    await globals()[name](browser, host, out)
                    print(out / f"{name}.png")
        finally:
            await lm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--only", nargs="*", choices=SHOTS, default=list(SHOTS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.out, args.only))
