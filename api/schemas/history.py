"""History models: downtime events and their coding, Pareto, reliability, OEE, timelines."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.historian import AuditEntry, StateInterval
from linemon.model import DowntimeCategory, DowntimeEvent, MachineState

from .live import OEE_EXAMPLE, Oee

REASON_CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
DOWNTIME_EXAMPLE = {
    "id": "press-1:2026-03-02T06:10:00+00:00", "line": "line-1", "machine": "press-1",
    "start": "2026-03-02T06:10:00Z", "end": "2026-03-02T06:15:00Z", "open": False,
    "duration_s": 300.0, "category": "unplanned", "micro_stop": False, "reason_code": "17",
    "reason_text": "Jam", "note": "cleared the feeder", "coded_by": "op-anna",
}


class Downtime(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DOWNTIME_EXAMPLE]})

    id: str
    line: str
    machine: str
    start: datetime
    end: datetime | None = Field(description="null while the stop is still open")
    open: bool
    duration_s: float = Field(ge=0, description="an open stop: so far")
    category: DowntimeCategory
    micro_stop: bool
    reason_code: str | None = Field(description="a person's coding wins over the machine's")
    reason_text: str | None
    note: str | None
    coded_by: str | None = Field(description="who coded it; null: the machine's own reason")

    @classmethod
    def of(cls, ev: DowntimeEvent, now: datetime) -> Downtime:
        return cls(
            id=ev.id, line=ev.line, machine=ev.machine, start=ev.start, end=ev.end,
            open=ev.end is None, duration_s=max(0.0, ev.duration_s(now)), category=ev.category,
            micro_stop=ev.micro_stop, reason_code=ev.reason_code, reason_text=ev.reason_text,
            note=ev.note, coded_by=ev.coded_by,
        )


class DowntimePage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [DOWNTIME_EXAMPLE], "next_cursor": "eyJvIjoic3RhcnRfZGVzYyJ9",
    }]})

    items: list[Downtime]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: done")


class ReasonIn(BaseModel):
    """Set the reason of a stop (PUT): the code is required, the note is optional."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "reason_code": "17", "note": "cleared the feeder",
    }]})

    reason_code: str = Field(pattern=REASON_CODE)
    note: str | None = Field(default=None, max_length=2000)


class DowntimePatch(BaseModel):
    """Change the reason and/or the note of a stop (PATCH); what is left out stays."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "note": "feeder sensor replaced",
    }]})

    reason_code: str | None = Field(default=None, pattern=REASON_CODE)
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _something(self) -> DowntimePatch:
        if self.reason_code is None and self.note is None:
            raise ValueError("give a reason_code, a note or both")
        return self


class AuditOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "downtime_id": DOWNTIME_EXAMPLE["id"], "by": "op-anna", "at": "2026-03-02T06:20:00Z",
        "before": DOWNTIME_EXAMPLE | {"reason_code": None, "reason_text": None, "note": None,
                                      "coded_by": None},
        "after": DOWNTIME_EXAMPLE,
    }]})

    downtime_id: str
    by: str
    at: datetime
    before: Downtime
    after: Downtime

    @classmethod
    def of(cls, entry: AuditEntry, now: datetime) -> AuditOut:
        return cls(downtime_id=entry.downtime_id, by=entry.by, at=entry.at,
                   before=Downtime.of(entry.before, now), after=Downtime.of(entry.after, now))


class Reason(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "17", "text": "Jam"}]})

    code: str
    text: str


PARETO_ROW_EXAMPLE = {"reason_code": "17", "reason_text": "Jam", "count": 7, "minutes": 60.0,
                      "share": 0.628, "cumulative_share": 0.628}


class ParetoRow(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PARETO_ROW_EXAMPLE]})

    reason_code: str | None = Field(description="null: stops nobody has coded yet")
    reason_text: str | None
    count: int
    minutes: float
    share: float = Field(description="of all minutes (or of the count, sorted by count)")
    cumulative_share: float


class Pareto(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z", "sort": "minutes",
        "total_count": 12, "total_minutes": 95.5,
        "reasons": [PARETO_ROW_EXAMPLE],
    }]})

    start: datetime
    end: datetime
    sort: Literal["minutes", "count"]
    total_count: int
    total_minutes: float
    reasons: list[ParetoRow]


class Reliability(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "machine": "press-1", "failures": 3, "failure_downtime_s": 1260.0,
        "operating_time_s": 25200.0, "mtbf_s": 8400.0, "mttr_s": 420.0,
    }]})

    line: str
    machine: str
    failures: int = Field(description="ended unplanned stops, micro-stops excluded")
    failure_downtime_s: float
    operating_time_s: float = Field(
        description="running + idle + micro-stops in the window (the OEE run time's states)")
    mtbf_s: float | None = Field(description="operating time / failures; null without failures")
    mttr_s: float | None = Field(description="failure downtime / failures")


class OeePeriod(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "machine": None, "day": "2026-03-02", "shift": "early",
        "start": "2026-03-02T06:00:00Z", "end": "2026-03-02T14:00:00Z", "oee": OEE_EXAMPLE,
    }]})

    line: str
    machine: str | None = Field(description="null: the line's figure (output at its end)")
    day: date = Field(description="production day: the local date its shifts start on")
    shift: str | None = Field(description="null when grouped by day")
    start: datetime
    end: datetime
    oee: Oee
    source: Literal["final", "replay"] = Field(
        "replay", description="final: the figure the engine recorded when the shift closed, "
        "at the ideal cycle times then in force; replay: recomputed from the state timeline, "
        "the stops and the counts at today's configuration (days, cut shifts, older history)")


class StateIntervalOut(BaseModel):
    state: MachineState
    start: datetime
    end: datetime
    duration_s: float
    reason_code: str | None
    reason_text: str | None

    @classmethod
    def of(cls, iv: StateInterval) -> StateIntervalOut:
        return cls(state=iv.state, start=iv.start, end=iv.end,
                   duration_s=(iv.end - iv.start).total_seconds(),
                   reason_code=iv.reason_code, reason_text=iv.reason_text)


class Timeline(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "machine": "press-1", "start": "2026-03-02T06:00:00Z",
        "end": "2026-03-02T07:00:00Z",
        "intervals": [{"state": "running", "start": "2026-03-02T06:00:00Z",
                       "end": "2026-03-02T06:10:00Z", "duration_s": 600.0,
                       "reason_code": None, "reason_text": None}],
    }]})

    line: str
    machine: str
    start: datetime
    end: datetime
    intervals: list[StateIntervalOut]


class Point(BaseModel):
    ts: datetime = Field(description="the bucket's start (aligned to the Unix epoch)")
    value: float


class Series(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "machine": "press-1", "signal": "temperature", "every_s": 60,
        "agg": "mean", "points": [{"ts": "2026-03-02T06:00:00Z", "value": 61.2}],
    }]})

    line: str
    machine: str
    signal: str
    every_s: int
    agg: Literal["mean", "min", "max", "last"]
    points: list[Point]


class CountBucketOut(BaseModel):
    start: datetime
    good: int
    reject: int


class Counts(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "line": "line-1", "machine": "press-1", "every_s": 3600,
        "buckets": [{"start": "2026-03-02T06:00:00Z", "good": 1710, "reject": 12}],
    }]})

    line: str
    machine: str
    every_s: int
    buckets: list[CountBucketOut]
