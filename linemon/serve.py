"""Run linemon and its API in one asyncio process until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import uvicorn

from api.app import create_app
from linemon.app import Linemon
from linemon.config import PlantConfig

log = logging.getLogger("linemon")


async def serve(
    config: PlantConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then stop everything cleanly."""
    linemon = Linemon(config)
    app = create_app(linemon)
    server = uvicorn.Server(uvicorn.Config(
        app,
        host=host or config.api.host,
        port=port if port is not None else config.api.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    ))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if server.started and on_ready is not None:
        bound = server.servers[0].sockets[0].getsockname()
        result = on_ready(f"http://{bound[0]}:{bound[1]}")
        if asyncio.iscoroutine(result):
            await result
    await serving
    if not server.started:
        raise SystemExit(f"could not start the API on {config.api.host}:{config.api.port}")
