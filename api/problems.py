"""Problem JSON (RFC 9457) for every error, whoever raises it.

`type` is about:blank throughout, so `title` is the HTTP status phrase and `detail`
says what to do. Nothing internal is exposed: an unexpected exception is logged and
answered with a fixed 500 text.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import Problem
from collector.historian import DowntimeNotFound, HistoryUnavailable
from linemon.app import AlertConflict, AlertNotFound
from linemon.remote import EngineUnavailable, LiveUnavailable

log = logging.getLogger("linemon.api")
PROBLEM_JSON = "application/problem+json"
MAX_FIELD_ERRORS = 10
HISTORY_RETRY_AFTER_S = 5
ENGINE_RETRY_AFTER_S = 2


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": _title(status), "status": status, "detail": detail},
        status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and routing's 404/405
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        parts = [f"{_where(err['loc'])}: {err['msg']}" for err in errors[:MAX_FIELD_ERRORS]]
        if len(errors) > MAX_FIELD_ERRORS:
            parts.append(f"and {len(errors) - MAX_FIELD_ERRORS} more")
        return problem(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(HistoryUnavailable)
    async def unavailable(_request: Request, exc: HistoryUnavailable) -> JSONResponse:
        return problem(503, f"the history store cannot answer right now: {exc}",
                       {"Retry-After": str(HISTORY_RETRY_AFTER_S)})

    @app.exception_handler(DowntimeNotFound)
    async def no_downtime(_request: Request, exc: DowntimeNotFound) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(AlertNotFound)
    async def no_alert(_request: Request, exc: AlertNotFound) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(AlertConflict)
    async def alert_conflict(_request: Request, exc: AlertConflict) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(LiveUnavailable)
    @app.exception_handler(EngineUnavailable)
    async def engine_away(_request: Request, exc: Exception) -> JSONResponse:
        # Scaled out: the line's engine is down or cut off from the bus.
        return problem(503, str(exc), {"Retry-After": str(ENGINE_RETRY_AFTER_S)})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "the error was logged; no details are exposed")


def _where(loc: Any) -> str:
    return ".".join(str(p) for p in loc) or "request"


DESCRIPTIONS = {
    400: "the body could not be read (not UTF-8 JSON)",
    401: "no API key, or an unknown one",
    403: "the key's role, kiosk limit or lines do not allow this",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "the request body is too large",
    422: "invalid parameters or body; `detail` names the field",
    429: "too many unknown API keys from this client; see Retry-After",
    503: "the history store, or (scaled out) the line's engine, cannot answer right now; see "
         "Retry-After",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: problem JSON for each status (api.openapi fixes the media type)."""
    return {code: {"model": Problem, "description": DESCRIPTIONS[code]} for code in codes}
