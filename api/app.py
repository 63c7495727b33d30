"""FastAPI app factory: routers per domain, problem-JSON errors, limits, linemon's lifecycle.

    app = create_app(linemon)           # the app starts and stops linemon (`linemon run`)
    app = create_app(linemon, manage=False)  # the caller runs linemon (tests, embedding)

The live hub (engine events -> boards) runs in the app's lifespan either way. Keys are
checked here, at construction: a placeholder or missing key refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import openapi, problems
from api.auth import AuthThrottle, KeyRing
from api.limits import BodyLimit
from api.live_hub import LiveHub
from api.metrics import registry_for
from api.routes import (
    alerts,
    analysis,
    downtime,
    live,
    live_ws,
    machine_history,
    notify,
    ops,
    pages,
)
from linemon.app import Linemon
from linemon.bus import Bus
from linemon.config import ConfigError
from linemon.engine_role import EnginePublisher
from linemon.roles import Runtime

log = logging.getLogger("linemon.api")

DESCRIPTION = """\
Live machine states, downtime history and OEE for production lines.

**Auth**: send an API key as `Authorization: Bearer <key>` (or `X-API-Key`). Roles, from
least to most: viewer < operator < maintenance < supervisor < admin; each operation says
what it needs (`x-linemon-access`). Keys may be limited to some lines; a kiosk key opens
only its line's live board (REST and the WebSocket `/api/v1/lines/{line}/live`, which
also takes `?key=`). Missing or unknown key: 401; wrong role or line: 403; too many
unknown keys from one client: 429.

**Errors** are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`.

**Times** are UTC with an offset (`2026-03-02T06:00:00Z`); history windows are
`[start, end)` and at most `api.max_range_days` long.
"""

TAGS = [
    {"name": "live", "description": "the engine's live view: boards, phones"},
    {"name": "downtime", "description": "downtime history and reason coding"},
    {"name": "analysis", "description": "Pareto, MTBF/MTTR and OEE over a window"},
    {"name": "history", "description": "one machine's timeline, signals and counts"},
    {"name": "alerts", "description": "active alerts, acknowledgements and silences"},
    {"name": "operations", "description": "health, readiness and metrics"},
]


def create_app(linemon: Runtime, *, manage: bool = True, live_interval_s: float = 1.0,
               bus: Bus | None = None) -> FastAPI:
    """`manage=True`: the app starts and stops linemon with its own lifespan. `bus`: the
    scale-out broker connection, reported by /readyz."""
    api_config = linemon.config.api
    keyring = KeyRing(api_config)  # before anything else: bad keys stop the start
    hub = LiveHub(linemon, min_interval_s=live_interval_s, heartbeat_s=live_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await linemon.start()
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            if manage:
                await linemon.stop()

    app = FastAPI(title="linemon", version="0.1.0", description=DESCRIPTION,
                  summary="Live machine states, downtime and OEE for production lines",
                  openapi_tags=TAGS, lifespan=lifespan)
    throttle = AuthThrottle(api_config.auth_failures_per_minute)
    app.state.linemon = linemon
    app.state.bus = bus
    app.state.keyring = keyring
    app.state.auth_throttle = throttle
    app.state.hub = hub
    app.state.metrics = registry_for(linemon, hub, throttle)

    app.add_middleware(BodyLimit, max_bytes=api_config.max_body_bytes)
    if api_config.cors_origins:  # added last: outermost, so refusals carry CORS headers too
        app.add_middleware(
            CORSMiddleware, allow_origins=list(api_config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["Retry-After", "Content-Disposition"])
    app.include_router(ops.health_router)
    for module in (ops, live, live_ws, downtime, analysis, machine_history, alerts, pages):
        app.include_router(module.router)
    if linemon.notifier is not None:  # the delivery log and ack links: only when configured
        app.include_router(notify.router)
    problems.install(app)
    openapi.install(app)
    return app


def create_engine_app(linemon: Linemon, publisher: EnginePublisher) -> FastAPI:
    """An engine process's HTTP side: liveness and readiness for the orchestrator (open),
    and its Prometheus metrics (sources, spool, forwarder, engine) for a key that sees every
    line, as on the API, when the engine has the API's key variables; people use the API
    processes for everything else."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await linemon.start()
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()
            await linemon.stop()

    app = FastAPI(title="linemon engine", version="0.1.0", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.linemon = linemon
    app.state.bus = publisher.bus
    app.include_router(ops.health_router)
    try:
        keyring = KeyRing(linemon.config.api)
    except ConfigError as err:
        # Engines ran without the API's key variables before they served /metrics; such an
        # engine still starts, and says what /metrics needs.
        log.warning("engine: /metrics is off: %s", err)
    else:
        throttle = AuthThrottle(linemon.config.api.auth_failures_per_minute)
        app.state.keyring = keyring
        app.state.auth_throttle = throttle
        app.state.metrics = registry_for(linemon, None, throttle)
        app.include_router(ops.router)
    problems.install(app)
    return app
