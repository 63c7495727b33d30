"""The dashboards' pages and static assets, served by linemon itself.

    GET /board/{line}   the line's wall board (kiosk: `?key=<kiosk key>` in the URL)
    GET /explorer       downtime explorer for maintenance (asks for an API key)
    GET /phone          supervisor's phone view (asks for an API key)
    GET /ui/{file}      the pages' CSS, ES modules and the vendored Chart.js

The pages hold no plant data, so serving them needs no key: the data comes from the API,
which checks the key on every call. Plants are often offline, so nothing is loaded from
elsewhere, and the Content-Security-Policy makes the browser refuse anything that would
be (a stray CDN link fails loudly in the browser tests instead of silently at a plant).
The board's URL carries its kiosk key: `no-referrer` keeps it out of Referer headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from api.pages import PAGES_DIR
from api.schemas.common import ID_PATTERN

router = APIRouter(include_in_schema=False)  # pages, not API operations

MEDIA = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # the API and the board's WebSocket, same origin only
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Revalidate every time (ETag makes it cheap): a kiosk picks up an upgrade on reload.
    "Cache-Control": "no-cache",
}


def _assets() -> dict[str, Path]:
    """Every servable file by its URL name; fixed at import, so no path reaches the disk."""
    found = {}
    for path in PAGES_DIR.rglob("*"):
        if path.is_file() and path.suffix in MEDIA and "__pycache__" not in path.parts:
            found[path.relative_to(PAGES_DIR).as_posix()] = path
    return found


ASSETS = _assets()


def _page(name: str) -> FileResponse:
    return FileResponse(PAGES_DIR / name, media_type="text/html; charset=utf-8",
                        headers=HEADERS)


@router.get("/board/{line}")
async def board(line: Annotated[str, PathParam(pattern=ID_PATTERN)]) -> FileResponse:
    # An unknown line still gets the page: it says so once the API answers (with the key).
    return _page("board.html")


@router.get("/explorer")
async def explorer() -> FileResponse:
    return _page("explorer.html")


@router.get("/phone")
async def phone() -> FileResponse:
    return _page("phone.html")


@router.get("/ui/{name:path}")
async def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise HTTPException(404, f"no dashboard asset {name!r}")
    return FileResponse(path, media_type=MEDIA[path.suffix], headers=HEADERS)
