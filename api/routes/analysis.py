"""Maintenance and production figures over a window: Pareto, MTBF/MTTR, OEE per shift or day."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from api.analysis import pareto, reliability
from api.auth import Principal, Viewer
from api.history_access import (
    caller_errors,
    check_stop_count,
    line_config,
    line_filter,
    linemon_of,
    visible_lines,
)
from api.limits import TimeWindow
from api.oee_history import oee_periods
from api.openapi import AccessRoute
from api.problems import responses
from api.schemas import OeePeriod, Pareto, Reliability
from api.schemas.common import Id
from collector.historian.totals import MachineTotal
from linemon.model import DowntimeCategory

router = APIRouter(prefix="/api/v1", tags=["analysis"], route_class=AccessRoute)
HISTORY = responses(422, 503)
LineQ = Annotated[Id | None, Query(description="default: every line the key sees")]
MachineQ = Annotated[Id | None, Query()]


@router.get("/pareto", response_model=Pareto, responses=HISTORY,
            summary="Stop reasons ranked by minutes (or count), with cumulative share")
async def downtime_pareto(
    request: Request, window: TimeWindow, line: LineQ = None, machine: MachineQ = None,
    category: Literal["unplanned", "planned", "changeover", "all"] = "unplanned",
    sort: Literal["minutes", "count"] = "minutes",
    who: Principal = Viewer,
) -> Pareto:
    """Stops that started in the window, with their whole duration (an open one: so far).
    Uncoded stops are one row with `reason_code: null`."""
    lm = linemon_of(request)
    line_id, machine_id = line_filter(lm, who, line, machine)
    with caller_errors():
        totals = await lm.historian.query.downtime_by_reason(
            start=window.start, end=window.end, line=line_id, machine=machine_id,
            category=None if category == "all" else DowntimeCategory(category))
    count = sum(t.count for t in totals)
    check_stop_count(count)
    rows = pareto(totals, sort)
    return Pareto(start=window.start, end=window.end, sort=sort, total_count=count,
                  total_minutes=round(sum(r.minutes for r in rows), 4), reasons=rows)


@router.get("/reliability", response_model=list[Reliability], responses=HISTORY,
            summary="MTBF and MTTR per machine over the window")
async def machine_reliability(
    request: Request, window: TimeWindow, line: LineQ = None, machine: MachineQ = None,
    who: Principal = Viewer,
) -> list[Reliability]:
    """MTBF = operating time / failures, MTTR = failure downtime / failures. A failure is an
    ended unplanned stop that is not a micro-stop; operating time is running, idle and
    micro-stop time from the state timeline."""
    lm = linemon_of(request)
    q = lm.historian.query
    if machine is not None:
        owner, _ = line_filter(lm, who, line, machine)
        targets = [(owner or "", machine)]
    else:
        targets = [(ln.id, m.id) for ln in visible_lines(lm, who, line) for m in ln.machines]
    machines = [m for _, m in targets]
    totals: dict[str, list[MachineTotal]] = defaultdict(list)
    with caller_errors():
        for t in await q.downtime_by_machine(start=window.start, end=window.end,
                                             machines=machines):
            totals[t.machine].append(t)
        in_state = await q.time_in_state(machines, window.start, window.end)
    for machine_id in machines:
        check_stop_count(sum(t.count for t in totals[machine_id]))
    return [reliability(line_id, machine_id, in_state[machine_id], totals[machine_id])
            for line_id, machine_id in targets]


@router.get("/oee", response_model=list[OeePeriod], responses=HISTORY,
            summary="OEE per shift or per production day, per machine and for the line")
async def oee_history(
    request: Request, window: TimeWindow, line: Annotated[Id, Query()], machine: MachineQ = None,
    by: Literal["shift", "day"] = "shift",
    who: Principal = Viewer,
) -> list[OeePeriod]:
    """A closed shift inside the window: the final figures the engine recorded when it
    closed (`source: final`, at the ideal cycle times then in force). Otherwise (days, cut
    shifts, older history) recomputed from the state timeline, the stops and the part
    counts with the same accounting and OEE policy as the live OEE (`source: replay`). The
    line's figure (`machine: null`) is output-based: good parts at the line's end machine
    times the line's ideal cycle time (configured, else its slowest machine's). Windows cut
    shifts: each period covers only its part inside [start, min(end, now))."""
    lm = linemon_of(request)
    line_cfg = line_config(lm, line, in_query=True)
    machine_cfg = None
    if machine is not None:
        machine_cfg = next((m for m in line_cfg.machines if m.id == machine), None)
        if machine_cfg is None:
            raise HTTPException(422, f"query.machine: no machine {machine!r} on line {line!r}")
    if machine_cfg is None and not who.may_see(line):
        raise HTTPException(403, f"key {who.name!r} is not allowed on line {line!r}")
    return await oee_periods(lm, line_cfg, machine_cfg, window, by)
