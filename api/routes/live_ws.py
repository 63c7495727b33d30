"""A line's board over WebSocket: a snapshot on connect, then a push a second; a machine's
state change or an alert change goes out at once."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, HTTPException, WebSocket

from api.auth import Access, authorize
from api.live_hub import URGENT_GAP_S, Subscriber, message
from api.problems import problem
from api.routes.live import hub_of, known_line
from linemon.remote import LiveUnavailable

router = APIRouter(prefix="/api/v1", tags=["live"])
BOARD = Access("viewer", kiosk=True)


@router.websocket("/lines/{line}/live")
async def live(websocket: WebSocket, line: str) -> None:
    """A line's board over WebSocket.

    Auth: `Authorization: Bearer <key>`, `X-API-Key`, or `?key=<key>` (browsers cannot set
    headers on a WebSocket; use a kiosk key there, it opens nothing else). Refusals are
    HTTP answers to the handshake (401/403/404/429/503, problem JSON) where the server
    supports that, else a close with code 4000 + status.

    Messages (text, JSON): `{"type": "snapshot", "seq", "changes": [...], "line": Line}`,
    the first at once, then one per second (a heartbeat, with whatever changed), and a
    machine's state change or an alert change at once (at least 0.05 s apart). `changes`
    lists state changes, stops and alert changes since the previous message.
    """
    try:
        authorize(websocket, BOARD, allow_query_key=True)
        known_line(websocket, line)
    except HTTPException as err:
        await _refuse(websocket, err)
        return
    hub = hub_of(websocket)
    try:
        first = hub.snapshot(line)
    except LiveUnavailable as err:  # scaled out, and the line's engine is away
        await _refuse(websocket, HTTPException(503, str(err)))
        return
    sub = hub.subscribe(line)
    if sub is None:
        await _refuse(websocket, HTTPException(503, "too many live boards; retry in a minute"))
        return
    try:
        await websocket.accept()
        await websocket.send_text(message(0, [], first))
        await _serve(websocket, sub, hub.min_interval_s)
    finally:
        hub.unsubscribe(sub)


async def _serve(websocket: WebSocket, sub: Subscriber, min_interval_s: float) -> None:
    """Send until the client leaves; its messages are read (and ignored) to notice that."""

    async def pump() -> None:
        last = time.monotonic()
        while True:
            text = await sub.next_message()
            gap = min(URGENT_GAP_S, min_interval_s) if sub.urgent else min_interval_s
            wait = last + gap - time.monotonic()
            if wait > 0:  # the first push after the connect snapshot keeps the pace too
                await asyncio.sleep(wait)
            await websocket.send_text(text)
            last = time.monotonic()

    async def drain() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(pump()), asyncio.create_task(drain())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _refuse(websocket: WebSocket, err: HTTPException) -> None:
    answer = problem(err.status_code, str(err.detail), err.headers)
    try:
        await websocket.send_denial_response(answer)
    except RuntimeError:  # the server cannot answer a handshake with HTTP: close instead
        await websocket.close(code=4000 + err.status_code, reason=str(err.detail)[:120])
