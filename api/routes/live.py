"""Live view: lines and machines, from the engine's memory (never a database query)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from api.auth import Principal, Viewer
from api.schemas import Line, LineSummary, Machine, Problem
from linemon.app import Linemon
from linemon.model import MachineState

router = APIRouter(prefix="/api/v1", tags=["live"])
NOT_FOUND = {404: {"model": Problem, "description": "no such line or machine"}}


def _linemon(request: Request) -> Linemon:
    return request.app.state.linemon


@router.get("/lines", response_model=list[LineSummary], summary="Every line at a glance")
def list_lines(request: Request, who: Principal = Viewer) -> list[LineSummary]:
    lm = _linemon(request)
    now = lm.clock()
    out = []
    for line in lm.config.lines:
        if not who.may_see(line.id):
            continue
        view = lm.engine.line_view(line.id, now)
        states = [m.state for m in view.machines]
        out.append(LineSummary(
            line=line.id,
            name=view.name,
            machines=len(states),
            running=states.count(MachineState.RUNNING),
            down=states.count(MachineState.DOWN),
            oee=view.oee.oee if view.oee else None,
        ))
    return out


@router.get("/lines/{line}", response_model=Line, responses=NOT_FOUND,
            summary="A line's live snapshot: machines, counts, OEE, target vs actual")
def get_line(line: str, request: Request, _: Principal = Viewer) -> Line:
    lm = _linemon(request)
    if line not in {ln.id for ln in lm.config.lines}:
        raise HTTPException(404, f"no line {line!r}; see GET /api/v1/lines")
    return Line.of(lm.engine.line_view(line, lm.clock()))


@router.get("/lines/{line}/machines/{machine}", response_model=Machine, responses=NOT_FOUND,
            summary="One machine's live detail")
def get_machine(line: str, machine: str, request: Request, _: Principal = Viewer) -> Machine:
    lm = _linemon(request)
    tracker = lm.engine.trackers.get(machine)
    if tracker is None or tracker.settings.line != line:
        raise HTTPException(404, f"no machine {machine!r} on line {line!r}")
    return Machine.of(lm.engine.machine_view(machine, lm.clock()))
