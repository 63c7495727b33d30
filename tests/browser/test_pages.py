"""The pages over plain HTTP: everything they load is linemon's own, under a strict CSP, and
the vendored Chart.js is byte for byte the pinned release (no browser, no network)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from api.pages import PAGES_DIR
from api.routes.pages import ASSETS
from tests.api.conftest import running_plant, serving_api
from tests.support.plants import REPO

PAGES = ("/board/line-a", "/explorer", "/phone")


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_plant(tmp_path, history=False) as (lm, clock), \
            serving_api(lm, clock) as api:
        yield api.client


def _referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_pages_load_only_their_own_assets(client: httpx.AsyncClient) -> None:
    for page in PAGES:
        response = await client.get(page)  # no key: the page holds no data
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert response.headers["referrer-policy"] == "no-referrer"  # the kiosk key is in a URL
        for url in _referenced(response.text):
            if url.startswith("data:"):
                continue
            assert url.startswith("/ui/"), f"{page} loads {url} from elsewhere"
            asset = await client.get(url)
            assert asset.status_code == 200, url


async def test_every_module_import_is_served(client: httpx.AsyncClient) -> None:
    modules = [name for name in ASSETS if name.endswith(".js") and "/" not in name]
    assert {"board.js", "explorer.js", "phone.js", "live.js"} <= set(modules)
    for name in modules:
        response = await client.get(f"/ui/{name}")
        assert response.headers["content-type"].startswith("text/javascript")
        for imported in re.findall(r"from '\./([\w.-]+)'", response.text):
            assert imported in ASSETS, f"{name} imports {imported}, which is not served"


async def test_nothing_else_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/ui/nope.js", "/ui/../app.py", "/ui/__init__.py", "/ui/board.html",
                 "/ui/vendor/__init__.py", "/ui/%2e%2e/auth.py"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


async def test_pages_are_not_api_operations(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if not p.startswith(("/api/", "/healthz", "/readyz",
                                                      "/metrics"))]


def test_vendored_chartjs_is_the_pinned_release() -> None:
    script = (REPO / "deploy" / "vendor-assets.sh").read_text()
    pins = dict(re.findall(r"^(\w+_SHA256)=([0-9a-f]{64})$", script, re.MULTILINE))
    vendor = PAGES_DIR / "vendor"
    for name, pin in (("chart.umd.min.js", "CHARTJS_SHA256"),
                      ("chart.js-LICENSE.txt", "LICENSE_SHA256")):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert digest == pins[pin], f"{name} is not what deploy/vendor-assets.sh pins"
    version = re.search(r"^CHARTJS_VERSION=(\S+)$", script, re.MULTILINE)
    assert version and f"Chart.js v{version[1]}" in (vendor / "chart.umd.min.js").read_text()
    assert "MIT License" in (vendor / "chart.js-LICENSE.txt").read_text()
