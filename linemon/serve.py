"""Run linemon and its API in one asyncio process until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI

from api.app import create_app, create_engine_app
from linemon.app import Linemon
from linemon.config import ConfigError, ConfigIssue, PlantConfig
from linemon.engine_role import EnginePublisher
from linemon.remote import RemoteLinemon
from linemon.roles import Role, check_role, default_engine_id, engine_config, parse_lines

log = logging.getLogger("linemon")


async def serve(
    config: PlantConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
    role: Role = "all",
    lines: str | None = None,
    engine_id: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then stop everything cleanly."""
    app = build_app(config, role, lines, engine_id)
    server = uvicorn.Server(uvicorn.Config(
        app,
        host=host or config.api.host,
        port=port if port is not None else config.api.port,
        log_level="warning",
        http="httptools",  # a C parser: h11 (uvicorn's fallback) costs ~45 % more per request
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


def build_app(config: PlantConfig, role: Role, lines: str | None,
              engine_id: str | None) -> FastAPI:
    """The process's app for its role; a bad role setup raises ConfigError naming the flag."""
    check_role(config, role)
    if role == "engine":
        if lines is None:
            raise ConfigError("command line", [ConfigIssue(
                path="--lines", message="--role engine needs --lines, e.g. --lines line-1")])
        own = parse_lines(config, lines)
        engine_id = engine_id or default_engine_id(own)
        sliced = engine_config(config, own, engine_id)
        assert config.bus is not None  # check_role
        linemon = Linemon(sliced)
        log.info("engine %s: lines %s", engine_id, ", ".join(own))
        return create_engine_app(linemon, EnginePublisher(linemon, config.bus, engine_id))
    if lines is not None or engine_id is not None:
        raise ConfigError("command line", [ConfigIssue(
            path="--lines", message="--lines and --engine-id go with --role engine")])
    if role == "api":
        remote = RemoteLinemon(config)
        return create_app(remote, bus=remote.bus)
    return create_app(Linemon(config))
