"""Alerts: list active and recent ones; acknowledge and silence (supervisor and above).

Alerts live in the engine's memory. An acknowledgement is an event like any other: it
goes to the historian and to the live boards through `linemon.publish`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request

from api.auth import Principal, Supervisor, Viewer
from api.history_access import linemon_of
from api.limits import as_utc
from api.openapi import AccessRoute
from api.problems import responses
from api.schemas import AlertOut, SilenceIn, SilenceOut
from api.schemas.common import Id
from linemon.model import Alert
from linemon.roles import Runtime

router = APIRouter(prefix="/api/v1", tags=["alerts"], route_class=AccessRoute)
Fingerprint = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["5c1e0d7a9b2f4e61"])]
SilenceId = Annotated[str, Path(pattern=r"^silence-[A-Za-z0-9_.-]{1,80}$",
                                examples=["silence-1"])]


def _visible(who: Principal, alert: Alert) -> bool:
    line = alert.labels.get("line")
    return who.lines is None or (line is not None and who.may_see(line))


@router.get("/alerts", response_model=list[AlertOut], responses=responses(422),
            summary="Active (pending and firing) or recently resolved alerts")
async def list_alerts(
    request: Request, line: Annotated[Id | None, Query()] = None,
    status: Literal["active", "recent", "all"] = "active", who: Principal = Viewer,
) -> list[AlertOut]:
    book = linemon_of(request).engine.alerts
    alerts = (book.active() if status != "recent" else []) + (
        book.recent() if status != "active" else [])
    return [AlertOut.of(a) for a in alerts
            if _visible(who, a) and (line is None or a.labels.get("line") == line)]


@router.post("/alerts/{fingerprint}/ack", response_model=AlertOut,
             responses=responses(404, 409, 422, 503),
             summary="Acknowledge a firing alert (again: no change, same answer)")
async def acknowledge(fingerprint: Fingerprint, request: Request,
                      who: Principal = Supervisor) -> AlertOut:
    lm = linemon_of(request)
    alert = next((a for a in lm.engine.alerts.active() if a.fingerprint == fingerprint), None)
    if alert is not None and not _visible(who, alert):
        raise HTTPException(403, f"key {who.name!r} is not allowed on this alert's line")
    return AlertOut.of(await lm.acknowledge(fingerprint, who.name))


@router.get("/silences", response_model=list[SilenceOut],
            summary="Silences in force or still to come")
async def list_silences(request: Request, who: Principal = Viewer) -> list[SilenceOut]:
    lm = linemon_of(request)
    now = lm.clock()
    return [SilenceOut.of(s, now) for s in lm.engine.alerts.silences(now)
            if _silence_visible(lm, who, s.matchers)]


@router.post("/silences", response_model=SilenceOut, status_code=201,
             responses=responses(422, 503),
             summary="Silence a line, a machine or a rule for a while")
async def create_silence(body: SilenceIn, request: Request,
                   who: Principal = Supervisor) -> SilenceOut:
    """Silenced alerts stay visible (marked `silenced_by`) and are not pushed to phones.
    A key limited to some lines must silence one of its lines or machines."""
    lm = linemon_of(request)
    matchers = _matchers(lm, who, body)
    now = lm.clock()
    starts = as_utc(body.starts_at, "starts_at", "body") if body.starts_at is not None else now
    silence = await lm.silence(matchers, starts, starts + timedelta(seconds=body.duration_s),
                               who.name, body.comment)
    return SilenceOut.of(silence, now)


@router.delete("/silences/{silence_id}", response_model=SilenceOut,
               responses=responses(404, 422, 503), summary="End a silence now")
async def expire_silence(silence_id: SilenceId, request: Request,
                   who: Principal = Supervisor) -> SilenceOut:
    lm = linemon_of(request)
    now = lm.clock()
    current = next((s for s in lm.engine.alerts.silences(now) if s.id == silence_id), None)
    if current is None:
        raise HTTPException(404, f"no silence {silence_id!r} in force or to come")
    if not _silence_visible(lm, who, current.matchers):
        raise HTTPException(403, f"key {who.name!r} may not change this silence")
    ended = await lm.expire_silence(silence_id)
    if ended is None:
        raise HTTPException(404, f"no silence {silence_id!r} in force or to come")
    return SilenceOut.of(ended, lm.clock())


def _silence_visible(lm: Runtime, who: Principal, matchers: dict[str, str]) -> bool:
    line = lm.config.silence_line(matchers)
    return who.lines is None or (line is not None and who.may_see(line))


def _matchers(lm: Runtime, who: Principal, body: SilenceIn) -> dict[str, str]:
    lines = {ln.id for ln in lm.config.lines}
    machine_line = {m.id: ln.id for ln, m in lm.config.machines()}
    if body.line is not None and body.line not in lines:
        raise HTTPException(422, f"body.line: no line {body.line!r}")
    if body.machine is not None:
        owner = machine_line.get(body.machine)
        if owner is None:
            raise HTTPException(422, f"body.machine: no machine {body.machine!r}")
        if body.line is not None and body.line != owner:
            raise HTTPException(422, f"body.machine: {body.machine!r} is on line {owner!r}")
    matchers = {k: v for k, v in (("line", body.line), ("machine", body.machine),
                                  ("rule", body.rule)) if v is not None}
    if not matchers:
        raise HTTPException(422, "body: name a line, a machine or a rule to silence")
    if not _silence_visible(lm, who, matchers):
        raise HTTPException(403, f"key {who.name!r} may only silence its own lines: name "
                            "one of them (or one of their machines)")
    return matchers
