"""Fixtures for the API tests: a real Linemon with an hour of history, its app, a client.

Nothing is mocked: the engine, the spool and the store (SQLite, or InfluxDB for the
backend-parametrized tests) are the real ones, fed through `Linemon.ingest`. Sources are
built but never started (no broker is needed); readiness tests flip their flag.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from linemon.app import Linemon
from tests.api.plant import BASE, PlantClock, bearer, plant_config, play_history
from tests.support.web import serving

BACKENDS = ["sqlite", pytest.param("influxdb", marks=pytest.mark.influx)]


@dataclass
class Api:
    """One plant behind its app, and a client that can speak as any key."""

    lm: Linemon
    clock: PlantClock
    app: FastAPI
    client: httpx.AsyncClient

    async def call(self, method: str, path: str, who: str | None = "admin",
                   **kw: Any) -> httpx.Response:
        headers = {**(bearer(who) if who else {}), **kw.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kw)

    async def get(self, path: str, who: str | None = "admin", **kw: Any) -> httpx.Response:
        return await self.call("GET", path, who, **kw)

    async def json(self, path: str, who: str | None = "admin", **kw: Any) -> Any:
        response = await self.get(path, who, **kw)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.asynccontextmanager
async def running_plant(data_dir: Path, *, historian: Any = None, history: bool = True,
                        rules: dict[str, Any] | None = None, **api_config: Any
                        ) -> AsyncIterator[tuple[Linemon, PlantClock]]:
    clock = PlantClock(BASE)
    lm = Linemon(plant_config(data_dir, historian=historian, rules=rules, **api_config), clock)
    await lm.historian.start()
    try:
        if history:
            await play_history(lm, clock)
        yield lm, clock
    finally:
        await lm.stop()


@contextlib.asynccontextmanager
async def serving_api(lm: Linemon, clock: PlantClock, client_ip: str = "127.0.0.1",
                      **app_kw: Any) -> AsyncIterator[Api]:
    app = create_app(lm, manage=False, **app_kw)
    async with app.router.lifespan_context(app):  # ASGITransport runs no lifespan itself
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://linemon") as client:
            yield Api(lm, clock, app, client)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_plant(tmp_path) as (lm, clock), serving_api(lm, clock) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One SQLite plant for a module's tests that only read or are refused (module loop)."""
    async with running_plant(tmp_path_factory.mktemp("shared")) as (lm, clock), \
            serving_api(lm, clock) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def history_api(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """The same plant and history on each historian backend, shared by a module's read-only
    tests (mark the module `pytest.mark.asyncio(loop_scope="module")`)."""
    tmp_path = tmp_path_factory.mktemp(f"history-{request.param}")
    async with running_plant(tmp_path, historian=_historian(request, tmp_path)) as (lm, c), \
            serving_api(lm, c) as a:
        yield a


@pytest.fixture(params=BACKENDS)
async def fresh_history_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """Like history_api, but one plant per test: for tests that write (reason coding)."""
    async with running_plant(tmp_path, historian=_historian(request, tmp_path)) as (lm, c), \
            serving_api(lm, c) as a:
        yield a


def _historian(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param != "influxdb":
        return None  # the plant's default: SQLite in tmp_path
    from tests.historian.historian_helpers import TOKEN_ENV, influx_config

    server = request.getfixturevalue("influxd")
    os.environ[TOKEN_ENV] = server.token
    return influx_config(server, tmp_path)


@dataclass
class Served:
    api: Api
    url: str
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def uvicorn_serving(app: FastAPI) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """A real uvicorn on a free port, in this test's event loop."""
    async with serving(app) as web:
        assert web.server is not None
        yield web.host, web.server


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with running_plant(tmp_path) as (lm, clock):
        app = create_app(lm, manage=False)
        async with uvicorn_serving(app) as (url, server):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://l") as client:
                yield Served(Api(lm, clock, app, client), url, server)
