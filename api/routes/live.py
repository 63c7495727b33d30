"""Live view: lines and machines from the engine's memory, never from the database.

Handlers are `async def` on purpose: FastAPI runs plain `def` handlers in a thread
pool, and the engine's state belongs to the event loop (a board reading it from another
thread would race the engine). The same holds for every route that reads linemon.

Answers are serialized once (the hub caches a line's snapshot) and returned as ready
JSON, so FastAPI does not validate and serialize the same model a second time; the
response models stay declared for the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from starlette.requests import HTTPConnection

from api.auth import Board, Principal
from api.history_access import linemon_of, machine_config
from api.live_hub import LiveHub
from api.openapi import AccessRoute
from api.problems import responses
from api.schemas import Line, LineSummary, Machine
from api.schemas.common import ID_PATTERN
from linemon.model import MachineState
from linemon.remote import LiveUnavailable

router = APIRouter(prefix="/api/v1", tags=["live"], route_class=AccessRoute)
LineId = Annotated[str, Path(pattern=ID_PATTERN, examples=["line-1"])]
MachineId = Annotated[str, Path(pattern=ID_PATTERN, examples=["press-1"])]
JSON = "application/json"


def hub_of(conn: HTTPConnection) -> LiveHub:
    return conn.app.state.hub


def known_line(conn: HTTPConnection, line: str) -> None:
    if line not in {ln.id for ln in conn.app.state.linemon.config.lines}:
        raise HTTPException(404, f"no line {line!r}; see GET /api/v1/lines")


@router.get("/lines", response_model=list[LineSummary],
            summary="Every line the key may see, at a glance")
async def list_lines(request: Request, who: Principal = Board) -> Response:
    lm = linemon_of(request)
    now = lm.clock()
    alerts = lm.engine.alerts.active()
    out = []
    for line in lm.config.lines:
        if not who.may_see(line.id):
            continue
        try:
            view = lm.engine.line_view(line.id, now)
        except LiveUnavailable:  # scaled out, and the line's engine is away
            out.append(LineSummary(line=line.id, name=line.name or line.id,
                                   machines=len(line.machines), running=0, down=0, oee=None,
                                   alerts=0, live=False))
            continue
        states = [m.state for m in view.machines]
        out.append(LineSummary(
            line=line.id, name=view.name, machines=len(states),
            running=states.count(MachineState.RUNNING), down=states.count(MachineState.DOWN),
            oee=view.oee.oee if view.oee else None,
            alerts=sum(1 for a in alerts if a.labels.get("line") == line.id)))
    body = b"[" + b",".join(s.model_dump_json().encode() for s in out) + b"]"
    return Response(body, media_type=JSON)


@router.get("/lines/{line}", response_model=Line, responses=responses(404, 422),
            summary="A line's live snapshot: machines, counts, OEE, target vs actual, alerts")
async def get_line(line: LineId, request: Request, _: Principal = Board) -> Response:
    known_line(request, line)
    return Response(hub_of(request).snapshot(line), media_type=JSON)


@router.get("/lines/{line}/machines/{machine}", response_model=Machine,
            responses=responses(404, 422), summary="One machine's live detail")
async def get_machine(line: LineId, machine: MachineId, request: Request,
                _: Principal = Board) -> Response:
    lm = linemon_of(request)
    machine_config(lm, line, machine)
    view = lm.engine.machine_view(machine, lm.clock())
    return Response(Machine.of(view).model_dump_json(), media_type=JSON)
