"""One machine's history: its state timeline, a signal's series, its part counts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request

from api.auth import Principal, Viewer
from api.history_access import caller_errors, linemon_of, machine_config
from api.limits import TimeWindow
from api.openapi import AccessRoute
from api.problems import responses
from api.routes.live import LineId, MachineId
from api.schemas import Counts, Series, Timeline
from api.schemas.history import CountBucketOut, Point, StateIntervalOut

router = APIRouter(prefix="/api/v1/lines/{line}/machines/{machine}", tags=["history"],
                   route_class=AccessRoute)
HISTORY = responses(404, 422, 503)
EverySeconds = Annotated[int, Query(ge=1, le=31 * 86_400,
                                    description="bucket width; buckets align to the Unix epoch")]


@router.get("/timeline", response_model=Timeline, responses=HISTORY,
            summary="The machine's states over [start, end): what it was doing, and why")
async def timeline(line: LineId, machine: MachineId, request: Request, window: TimeWindow,
                   _: Principal = Viewer) -> Timeline:
    """Starts with the state in effect at `start`; ends at min(end, now)."""
    lm = linemon_of(request)
    machine_config(lm, line, machine)
    with caller_errors():
        intervals = await lm.historian.query.state_timeline(machine, window.start, window.end)
    return Timeline(line=line, machine=machine, start=window.start, end=window.end,
                    intervals=[StateIntervalOut.of(iv) for iv in intervals])


@router.get("/signals/{signal}", response_model=Series, responses=HISTORY,
            summary="A signal's values aggregated per bucket (mean, min, max or last)")
async def signal_series(
    line: LineId, machine: MachineId,
    signal: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$", examples=["temperature"])],
    request: Request, window: TimeWindow, every_s: EverySeconds = 60,
    agg: Literal["mean", "min", "max", "last"] = "mean",
    _: Principal = Viewer,
) -> Series:
    """Numeric values of good or uncertain quality; empty buckets are left out."""
    lm = linemon_of(request)
    config = machine_config(lm, line, machine)
    if signal not in config.tags:
        raise HTTPException(404, f"{machine!r} has no signal {signal!r}; it has "
                            f"{', '.join(sorted(config.tags))}")
    with caller_errors():
        points = await lm.historian.query.signal_series(
            machine, signal, window.start, window.end, every_s, agg)
    return Series(line=line, machine=machine, signal=signal, every_s=every_s, agg=agg,
                  points=[Point(ts=p.ts, value=p.value) for p in points])


@router.get("/counts", response_model=Counts, responses=HISTORY,
            summary="Good and rejected parts per bucket, zeros included")
async def part_counts(line: LineId, machine: MachineId, request: Request, window: TimeWindow,
                      every_s: EverySeconds = 3600,
                      _: Principal = Viewer) -> Counts:
    lm = linemon_of(request)
    machine_config(lm, line, machine)
    with caller_errors():
        buckets = await lm.historian.query.counts(machine, window.start, window.end, every_s)
    return Counts(line=line, machine=machine, every_s=every_s,
                  buckets=[CountBucketOut(start=b.start, good=b.good, reject=b.reject)
                           for b in buckets])
