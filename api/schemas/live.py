"""Live view models: a line board and its machines, straight from the engine's memory."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from linemon.model import Alert, MachineState, OeeFigures
from rules.bottleneck import BottleneckReport
from rules.engine import BottleneckView, LineView, MachineView
from rules.kpi import LossShare, ShiftProgress

from .alerts import ALERT_EXAMPLE, AlertOut

OEE_EXAMPLE = {
    "planned_time_s": 3600, "run_time_s": 3300, "ideal_cycle_time_s": 2.0,
    "total_count": 1500, "good_count": 1470, "availability": 0.9167,
    "performance": 0.9091, "quality": 0.98, "oee": 0.8167,
    "losses_s": {"breakdowns": 240, "setup_changeover": 60, "small_stops": 90},
    "calendar_time_s": 3900, "teep": 0.7538, "technical_efficiency": 0.9322,
    "scrap_ratio": 0.02, "failures": 2, "micro_stops": 5, "mtbf_s": 1650.0, "mttr_s": 120.0,
}
PROGRESS_EXAMPLE = {
    "target": 12000, "planned_total_s": 27000, "elapsed_planned_s": 680.0,
    "moving_target": 302.1, "actual": 290, "forecast": 11520.0,
}
LOSSES_EXAMPLE = [{
    "machine": "press-1", "total_s": 390.0, "share": 0.65,
    "losses_s": {"breakdowns": 240, "setup_changeover": 60, "small_stops.micro_stops": 90,
                 "reduced_speed": 0, "startup_rejects": 0, "production_rejects": 0},
}]
BOTTLENECK_EXAMPLE = {
    "machine": "press-1", "active_since": "2026-03-02T06:02:10Z",
    "shift": {"start": "2026-03-02T06:00:00Z", "end": "2026-03-02T06:12:00Z",
              "analysed_s": 720.0, "main": "press-1",
              "shares": [{"machine": "press-1", "sole_s": 500.0, "shifting_s": 60.0,
                          "share": 0.7778}]},
}
MACHINE_EXAMPLE = {
    "line": "line-1", "machine": "press-1", "name": "Press 1", "state": "down",
    "since": "2026-03-02T06:10:00Z", "time_in_state_s": 125.0, "reason_code": "17",
    "reason_text": "Jam", "good": 1470, "reject": 30, "oee": OEE_EXAMPLE, "data_age_s": 0.4,
    "values": {"temperature": 61.5}, "product": "P-100",
}


class Oee(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [OEE_EXAMPLE]})

    planned_time_s: float = Field(description="planned production time so far [ISO 22400 PBT]")
    run_time_s: float = Field(description="planned time minus unplanned stops and changeover [APT]")
    ideal_cycle_time_s: float = Field(
        description="ideal cycle time [PRI], s; the mean over the parts when products differ")
    total_count: int = Field(description="parts made [PQ]")
    good_count: int = Field(description="good parts [GQ]")
    availability: float | None = Field(description="null when nothing was planned yet")
    performance: float | None = Field(description="ideal time / run time; null without run time")
    quality: float | None = Field(description="good / total; null without parts")
    oee: float | None = Field(description="availability x performance x quality")
    losses_s: dict[str, float] = Field(
        description="the six big losses in seconds (breakdowns, setup_changeover, small_stops, "
                    "reduced_speed, startup_rejects, production_rejects), what small stops are "
                    "made of (small_stops.*), and the time outside the base (planned_stops, "
                    "offline)")
    calendar_time_s: float | None = Field(
        None, description="the window's whole time so far, breaks included, offline left out")
    teep: float | None = Field(
        None, description="fully productive time / calendar time (TEEP)")
    technical_efficiency: float | None = Field(
        None, description="run time / (run time + breakdown time) [TE]")
    scrap_ratio: float | None = Field(None, description="rejects / total count [SR]")
    failures: int = Field(0, description="breakdowns that began in the window [FE]")
    micro_stops: int = Field(0, description="stops shorter than the micro-stop threshold")
    mtbf_s: float | None = Field(None, description="run time / failures [MTBF]; null without one")
    mttr_s: float | None = Field(
        None, description="breakdown time / failures [MTTR]; null without one")

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
            calendar_time_s=figures.calendar_time_s,
            teep=figures.teep,
            technical_efficiency=figures.technical_efficiency,
            scrap_ratio=figures.scrap_ratio,
            failures=figures.failures,
            micro_stops=figures.micro_stops,
            mtbf_s=figures.mtbf_s,
            mttr_s=figures.mttr_s,
        )


class Progress(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PROGRESS_EXAMPLE]})

    target: int | None = Field(description="good parts planned for the whole shift")
    planned_total_s: float = Field(description="the shift's planned production time, s")
    elapsed_planned_s: float = Field(description="planned production time passed so far, s")
    moving_target: float | None = Field(description="target x elapsed planned / planned time")
    actual: int = Field(description="good parts at the line end this shift")
    forecast: float | None = Field(description="end-of-shift output at the rate so far")

    @classmethod
    def of(cls, p: ShiftProgress) -> Progress:
        return cls(target=p.target, planned_total_s=p.planned_total_s,
                   elapsed_planned_s=p.elapsed_planned_s, moving_target=p.moving_target,
                   actual=p.actual, forecast=p.forecast)


class MachineLosses(BaseModel):
    machine: str
    losses_s: dict[str, float] = Field(
        description="the machine's own losses by kind, s (idle time is left out: it is the "
                    "other machines' loss showing here)")
    total_s: float = Field(description="the sum of its own losses, s")
    share: float | None = Field(
        description="its share of all the line's machines' own losses (0..1); null when "
                    "the line lost nothing")

    @classmethod
    def of(cls, s: LossShare) -> MachineLosses:
        return cls(machine=s.machine, losses_s=s.losses_s, total_s=s.total_s, share=s.share)


class BottleneckShareOut(BaseModel):
    machine: str
    sole_s: float = Field(description="time the machine alone was the bottleneck, s")
    shifting_s: float = Field(
        description="time it shared the bottleneck while it passed to or from another, s")
    share: float | None = Field(description="(sole + shifting) / the analysed time (0..1)")


class BottleneckShift(BaseModel):
    start: datetime
    end: datetime = Field(description="the shift's end or now, whichever is earlier")
    analysed_s: float = Field(description="the window minus its planned down time, s")
    shares: list[BottleneckShareOut] = Field(description="largest first")
    main: str | None = Field(description="the main bottleneck: largest sole + shifting time")

    @classmethod
    def of(cls, r: BottleneckReport) -> BottleneckShift:
        return cls(start=r.start, end=r.end, analysed_s=r.analysed_s, main=r.main,
                   shares=[BottleneckShareOut(machine=s.machine, sole_s=s.sole_s,
                                              shifting_s=s.shifting_s, share=s.share)
                           for s in r.shares])


class Bottleneck(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [BOTTLENECK_EXAMPLE]})

    machine: str | None = Field(
        description="the momentary bottleneck (active period method): the machine with the "
                    "longest active period running now; null when none is active")
    active_since: datetime | None = Field(description="start of that active period")
    shift: BottleneckShift | None = Field(
        description="the shift so far (refreshed every minute); null outside a shift")

    @classmethod
    def of(cls, v: BottleneckView) -> Bottleneck:
        return cls(machine=v.machine, active_since=v.active_since,
                   shift=BottleneckShift.of(v.shift) if v.shift is not None else None)


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
    product: str | None = Field(None, description="the product being made, when known")

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
            product=view.product,
        )


class Line(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "name": "Assembly Line 1", "at": "2026-03-02T06:12:05Z",
        "shift": "early", "shift_start": "2026-03-02T06:00:00Z",
        "shift_end": "2026-03-02T14:00:00Z", "target": 12000, "moving_target": 302.1,
        "actual": 290, "forecast": 11520.0, "oee": OEE_EXAMPLE, "machines": [MACHINE_EXAMPLE],
        "alerts": [ALERT_EXAMPLE], "progress": PROGRESS_EXAMPLE, "losses": LOSSES_EXAMPLE,
        "bottleneck": BOTTLENECK_EXAMPLE,
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
    progress: Progress | None = Field(
        None, description="shift target vs actual so far; null outside a shift")
    losses: list[MachineLosses] = Field(
        default_factory=list,
        description="each machine's own losses this shift and its share of the line's, "
                    "largest first")
    bottleneck: Bottleneck | None = Field(
        None, description="which machine holds the line back, now and over the shift so far")

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
            progress=Progress.of(view.progress) if view.progress is not None else None,
            losses=[MachineLosses.of(s) for s in view.losses],
            bottleneck=Bottleneck.of(view.bottleneck) if view.bottleneck is not None else None,
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
    live: bool = Field(True, description="false when the line's engine has not reported "
                       "recently (scaled out); the counts are then unknown, not zero")
