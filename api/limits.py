"""Request limits: body size (413) and history time windows (422).

The body limit is a pure ASGI middleware so it also catches chunked bodies that carry
no Content-Length: it counts bytes as the app reads them and stops at the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem

# Nanosecond timestamps in both stores end in 2262; nothing in a plant predates 1970.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
DEFAULT_WINDOW = timedelta(hours=24)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises an HTTPException met while reading the body, so this
                    # reaches the problem-JSON handler as a clean 413.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, self._detail(), {"Connection": "close"})(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime


Start = Annotated[datetime | None, Query(
    description="inclusive, with a UTC offset (2026-03-02T06:00:00Z); default: 24 h before end",
    examples=["2026-03-02T06:00:00Z"])]
End = Annotated[datetime | None, Query(
    description="exclusive, with a UTC offset; default: now", examples=["2026-03-03T06:00:00Z"])]


def time_window(request: Request, start: Start = None, end: End = None) -> Window:
    """[start, end) in UTC, at most `api.max_range_days` long."""
    lm = request.app.state.linemon
    max_days: float = lm.config.api.max_range_days
    end_utc = as_utc(end, "end") if end is not None else lm.clock()
    start_utc = as_utc(start, "start") if start is not None else _minus(end_utc, DEFAULT_WINDOW)
    if end_utc <= start_utc:
        raise HTTPException(422, "query.end: must be after start")
    if end_utc - start_utc > timedelta(days=max_days):
        raise HTTPException(422, f"query.start: the range may span at most {max_days:g} days; "
                            "narrow it or page through it")
    return Window(start_utc, end_utc)


def as_utc(value: datetime, name: str, where: str = "query") -> datetime:
    """UTC, or 422 for a time without an offset or outside what the stores can hold."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise HTTPException(422, f"{where}.{name}: needs a UTC offset, e.g. 2026-03-02T06:00:00Z")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise HTTPException(422, f"{where}.{name}: must lie between 1970 and 2200")
    return utc


def _minus(end: datetime, span: timedelta) -> datetime:
    return max(EARLIEST, end - span)


TimeWindow = Annotated[Window, Depends(time_window)]
