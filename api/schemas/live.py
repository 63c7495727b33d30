"""Live view models: a line board and its machines, straight from the engine's memory."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from linemon.model import Alert, MachineState, OeeFigures
from rules.engine import LineView, MachineView

from .alerts import ALERT_EXAMPLE, AlertOut

OEE_EXAMPLE = {
    "planned_time_s": 3600, "run_time_s": 3300, "ideal_cycle_time_s": 2.0,
    "total_count": 1500, "good_count": 1470, "availability": 0.9167,
    "performance": 0.9091, "quality": 0.98, "oee": 0.8167,
    "losses_s": {"breakdowns": 240, "setup_changeover": 60, "small_stops": 90},
}
MACHINE_EXAMPLE = {
    "line": "line-1", "machine": "press-1", "name": "Press 1", "state": "down",
    "since": "2026-03-02T06:10:00Z", "time_in_state_s": 125.0, "reason_code": "17",
    "reason_text": "Jam", "good": 1470, "reject": 30, "oee": OEE_EXAMPLE, "data_age_s": 0.4,
    "values": {"temperature": 61.5},
}


class Oee(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [OEE_EXAMPLE]})

    planned_time_s: float = Field(description="planned production time so far [ISO 22400 PBT]")
    run_time_s: float = Field(description="planned time minus unplanned stops and changeover [APT]")
    ideal_cycle_time_s: float
    total_count: int
    good_count: int
    availability: float | None = Field(description="null when nothing was planned yet")
    performance: float | None
    quality: float | None
    oee: float | None
    losses_s: dict[str, float]

    @classmethod
    def of(cls, figures: OeeFigures | None) -> Oee | None:
        if figures is None:
            return None
        return cls(
            planned_time_s=figures.planned_time_s,
            run_time_s=figures.run_time_s,
            ideal_cycle_time_s=figures.ideal_cycle_time_s,
            total_count=figures.total_count,
            good_count=figures.good_count,
            availability=figures.availability,
            performance=figures.performance,
            quality=figures.quality,
            oee=figures.oee,
            losses_s=figures.losses_s,
        )


class Machine(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [MACHINE_EXAMPLE]})

    line: str
    machine: str
    name: str
    state: MachineState
    since: datetime
    time_in_state_s: float
    reason_code: str | None
    reason_text: str | None
    good: int = Field(description="good parts this shift")
    reject: int = Field(description="rejected parts this shift")
    oee: Oee | None
    data_age_s: float | None = Field(description="seconds since the newest sample; null if none")
    values: dict[str, float | int | bool | str]

    @classmethod
    def of(cls, view: MachineView) -> Machine:
        return cls(
            line=view.line,
            machine=view.machine,
            name=view.name,
            state=view.state,
            since=view.since,
            time_in_state_s=view.time_in_state_s,
            reason_code=view.reason_code,
            reason_text=view.reason_text,
            good=view.good,
            reject=view.reject,
            oee=Oee.of(view.oee),
            data_age_s=view.data_age_s,
            values=view.values,  # type: ignore[arg-type]
        )


class Line(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "name": "Assembly Line 1", "at": "2026-03-02T06:12:05Z",
        "shift": "early", "shift_start": "2026-03-02T06:00:00Z",
        "shift_end": "2026-03-02T14:00:00Z", "target": 12000, "moving_target": 302.1,
        "actual": 290, "forecast": 11520.0, "oee": OEE_EXAMPLE, "machines": [MACHINE_EXAMPLE],
        "alerts": [ALERT_EXAMPLE],
    }]})

    line: str
    name: str
    at: datetime = Field(description="when this snapshot was taken")
    shift: str | None
    shift_start: datetime | None
    shift_end: datetime | None
    target: int | None = Field(description="good parts planned for the whole shift")
    moving_target: float | None = Field(description="target x elapsed planned time / planned time")
    actual: int = Field(description="good parts at the line end this shift")
    forecast: float | None = Field(description="end-of-shift output at the current rate")
    oee: Oee | None
    machines: list[Machine]
    alerts: list[AlertOut] = Field(description="the line's pending and firing alerts")

    @classmethod
    def of(cls, view: LineView, alerts: list[Alert]) -> Line:
        return cls(
            line=view.line,
            name=view.name,
            at=view.at,
            shift=view.shift,
            shift_start=view.shift_start,
            shift_end=view.shift_end,
            target=view.target,
            moving_target=view.moving_target,
            actual=view.actual,
            forecast=view.forecast,
            oee=Oee.of(view.oee),
            machines=[Machine.of(m) for m in view.machines],
            alerts=[AlertOut.of(a) for a in alerts if a.labels.get("line") == view.line],
        )


class LineSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "name": "Assembly Line 1", "machines": 5, "running": 4, "down": 1,
        "oee": 0.81, "alerts": 1,
    }]})

    line: str
    name: str
    machines: int
    running: int
    down: int
    oee: float | None
    alerts: int = Field(description="pending and firing alerts on the line")
