"""FastAPI app factory: routers per domain, problem-JSON errors, linemon's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.auth import KeyRing
from api.routes import live, ops
from linemon.app import Linemon

log = logging.getLogger("linemon.api")


def create_app(linemon: Linemon, *, manage: bool = True) -> FastAPI:
    """`manage=True`: the app starts and stops linemon with its own lifespan."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await linemon.start()
        try:
            yield
        finally:
            if manage:
                await linemon.stop()

    app = FastAPI(
        title="linemon",
        version="0.1.0",
        summary="Live machine states, downtime and OEE for production lines",
        lifespan=lifespan,
    )
    app.state.linemon = linemon
    app.state.keyring = KeyRing(linemon.config.api)
    if linemon.config.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=linemon.config.api.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "PATCH"], allow_headers=["*"])
    app.include_router(ops.router)
    app.include_router(live.router)
    _problem_json(app)
    return app


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None):
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def _problem_json(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        title = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(
            exc.status_code, "Request failed")
        return _problem(exc.status_code, title, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            parts.append(f"{where}: {err['msg']}")
        return _problem(422, "Invalid request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _problem(500, "Internal error", "the error was logged; no details are exposed")
