"""The history schema: how samples and events become points, and how points come back.

One schema for both stores (InfluxDB and SQLite); SCHEMA.md is the readable version.

Measurements (tags | fields | timestamp); `?` marks what may be absent:
- `sample`: line?, machine, signal, source?, quality | value (float) or value_str (string)
  | source_ts
- `state`: line, machine | state, previous, reason_code?, reason_text? | at
- `downtime`: line, machine | id, category, micro_stop, end_ns?, duration_s?, reason_code?,
  reason_text?, manual_reason_code?, manual_reason_text?, note?, coded_by? | start
- `downtime_audit`: line, machine, downtime_id | by, before (JSON), after (JSON) | at
- `parts`: line, machine | good (int), reject (int), ideal_cycle_time_s? (float) | at
- `oee`: line, machine? (absent: the line's figure) | planned_time_s, run_time_s,
  ideal_cycle_time_s, total_count, good_count, availability?, performance?, quality?,
  oee?, losses (JSON), calendar_time_s?, teep?, technical_efficiency?, scrap_ratio?,
  failures (int), micro_stops (int), mtbf_s?, mttr_s?, shift?, final (bool) | at
- `alert`: line?, machine?, rule_id, fingerprint | severity, state, message, labels (JSON),
  last_seen_ns, value?, acknowledged_by?, acknowledged_at_ns?, resolved_at_ns? | first_seen
- `sample_1m` (InfluxDB only): line?, machine, signal | count, sum, min, max, last | minute

Why it looks like this:
- A point is identified by measurement + tags + timestamp, so writing the same point again
  is an idempotent upsert (fields present in the new write replace the old ones, absent
  fields stay). Replay after an outage therefore never duplicates, and a downtime event
  is one point that its start, its end and any later edit rewrite.
- `value` is always a float (ints and bools are converted; ints are exact up to 2**53):
  InfluxDB fixes a field's type per measurement and shard, so an int counter on one machine
  and a float temperature on another would make one of them a rejected point.
- Things that can change over a point's life (category, micro_stop, reason) are fields,
  never tags: a changed tag would make a second point instead of an upsert.
- The engine's reason and a person's coding are separate fields (`reason_code` vs
  `manual_reason_code`) so a late engine event cannot overwrite a technician's code;
  readers take the manual code when present.
- `sample` has no line in the model; the writer fills it from the machine->line map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from math import isfinite
from typing import Any

from linemon.model import (
    Alert,
    AlertChanged,
    DowntimeCategory,
    DowntimeEnded,
    DowntimeEvent,
    DowntimeStarted,
    OeeFigures,
    OeeSnapshot,
    PartsProduced,
    Sample,
    StateChanged,
)

from .lineprotocol import LineProtocolError, encode_line, encode_point, format_field, series_key
from .spool import Record

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SAMPLE, STATE, DOWNTIME, AUDIT = "sample", "state", "downtime", "downtime_audit"
PARTS, OEE, ALERT, SAMPLE_1M = "parts", "oee", "alert", "sample_1m"

# Tag keys and field types per measurement: the SQLite store enforces them the way
# InfluxDB enforces a field's first-seen type.
TAGS: dict[str, tuple[str, ...]] = {
    SAMPLE: ("machine", "signal", "line", "source", "quality"),
    STATE: ("machine", "line"),
    DOWNTIME: ("machine", "line"),
    AUDIT: ("downtime_id", "machine", "line"),
    PARTS: ("machine", "line"),
    OEE: ("line", "machine"),
    ALERT: ("rule_id", "fingerprint", "line", "machine"),
    SAMPLE_1M: ("machine", "signal", "line"),
}
FIELDS: dict[str, dict[str, type]] = {
    SAMPLE: {"value": float, "value_str": str},
    STATE: {"state": str, "previous": str, "reason_code": str, "reason_text": str},
    DOWNTIME: {
        "id": str, "category": str, "micro_stop": bool, "end_ns": int, "duration_s": float,
        "reason_code": str, "reason_text": str, "manual_reason_code": str,
        "manual_reason_text": str, "note": str, "coded_by": str,
    },
    AUDIT: {"by": str, "before": str, "after": str},
    PARTS: {"good": int, "reject": int, "ideal_cycle_time_s": float},
    OEE: {
        "planned_time_s": float, "run_time_s": float, "ideal_cycle_time_s": float,
        "total_count": int, "good_count": int, "availability": float, "performance": float,
        "quality": float, "oee": float, "losses": str, "calendar_time_s": float,
        "teep": float, "technical_efficiency": float, "scrap_ratio": float, "failures": int,
        "micro_stops": int, "mtbf_s": float, "mttr_s": float, "shift": str, "final": bool,
    },
    ALERT: {
        "severity": str, "state": str, "message": str, "labels": str, "last_seen_ns": int,
        "value": float, "acknowledged_by": str, "acknowledged_at_ns": int,
        "resolved_at_ns": int,
    },
    SAMPLE_1M: {"count": int, "sum": float, "min": float, "max": float, "last": float},
}


def to_ns(ts: datetime) -> int:
    """Exact integer nanoseconds; a naive datetime is taken as UTC (the model's convention)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1_000)


class SampleEncoder:
    """Samples to spool records; caches each series' escaped key (the costly part)."""

    MAX_CACHE = 100_000

    def __init__(self, machine_lines: Mapping[str, str] | None = None) -> None:
        self._lines = dict(machine_lines or {})
        self._keys: dict[tuple[str, str, str, str], str] = {}
        self._last_when: datetime | None = None
        self._last_ns = 0
        self._last_ns_text = "0"

    def encode(self, s: Sample) -> Record:
        ck = (s.machine, s.signal, s.source, s.quality)
        key = self._keys.get(ck)
        if key is None:
            tags = {"line": self._lines.get(s.machine), "machine": s.machine,
                    "signal": s.signal, "source": s.source, "quality": str(s.quality)}
            key = series_key(SAMPLE, tags)
            if len(self._keys) >= self.MAX_CACHE:
                self._keys.clear()
            self._keys[ck] = key
        value = s.value
        if isinstance(value, str):
            if not value:  # influxd misplaces empty strings (see lineprotocol.format_fields)
                raise LineProtocolError("an empty string sample cannot be stored")
            field = f"value_str={format_field(value)}"
        else:
            number = float(value)  # bool and int become float
            if not isfinite(number):
                raise LineProtocolError(f"float field {number} is not finite")
            field = f"value={number!r}"  # format_field of a finite float, inlined (hot path)
        when = s.source_ts
        # The samples of a batch mostly share one timestamp (a server's sampling cycle), in
        # objects of their own when decoded: an equal one has the same nanoseconds (to_ns
        # costs ~20x the comparison). Only UTC ones are compared by value; any other zone
        # could hold equal-comparing but different instants (a fold), so only identity.
        if when is not self._last_when and not (when.tzinfo is UTC and when == self._last_when):
            self._last_ns = to_ns(when)
            self._last_ns_text = str(self._last_ns)
            self._last_when = when
        return Record(f"{key} {field} {self._last_ns_text}", "sample", False, self._last_ns)


def _downtime_fields(ev: DowntimeEvent) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": ev.id, "category": str(ev.category),
                              "micro_stop": ev.micro_stop}
    if ev.end is not None:
        fields["end_ns"] = to_ns(ev.end)
        fields["duration_s"] = float(ev.duration_s())
    if ev.coded_by:  # a person coded it (the engine passed the coding on)
        fields |= {"manual_reason_code": ev.reason_code, "manual_reason_text": ev.reason_text,
                   "note": ev.note, "coded_by": ev.coded_by}
    else:
        fields |= {"reason_code": ev.reason_code, "reason_text": ev.reason_text}
    return fields


def encode_event(ev: object) -> Record:
    """Engine events, OEE snapshots and alerts to one spool record each (never dropped)."""
    if isinstance(ev, PartsProduced):  # first: by far the most frequent event
        # Only the non-zero counts: a good and a reject count at the same instant arrive as two
        # events and must merge into one point (field union), not replace each other.
        fields: dict[str, Any] = {
            k: v for k, v in (("good", ev.good), ("reject", ev.reject)) if v}
        fields["ideal_cycle_time_s"] = _opt_float(ev.ideal_cycle_time_s)
        return _machine_event(PARTS, ev.line, ev.machine, fields, ev.at)
    if isinstance(ev, StateChanged):
        fields = {"state": str(ev.state), "previous": str(ev.previous),
                  "reason_code": ev.reason_code, "reason_text": ev.reason_text}
        return _machine_event(STATE, ev.line, ev.machine, fields, ev.at)
    if isinstance(ev, DowntimeStarted | DowntimeEnded):
        d = ev.event
        return _machine_event(DOWNTIME, d.line, d.machine, _downtime_fields(d), d.start)
    if isinstance(ev, OeeSnapshot):
        f = ev.figures
        fields = {"planned_time_s": float(f.planned_time_s), "run_time_s": float(f.run_time_s),
                  "ideal_cycle_time_s": float(f.ideal_cycle_time_s),
                  "total_count": f.total_count, "good_count": f.good_count,
                  "availability": _opt_float(f.availability),
                  "performance": _opt_float(f.performance), "quality": _opt_float(f.quality),
                  "oee": _opt_float(f.oee), "losses": json.dumps(f.losses_s, sort_keys=True),
                  "calendar_time_s": _opt_float(f.calendar_time_s), "teep": _opt_float(f.teep),
                  "technical_efficiency": _opt_float(f.technical_efficiency),
                  "scrap_ratio": _opt_float(f.scrap_ratio), "failures": int(f.failures),
                  "micro_stops": int(f.micro_stops), "mtbf_s": _opt_float(f.mtbf_s),
                  "mttr_s": _opt_float(f.mttr_s), "shift": ev.shift, "final": ev.final}
        return _machine_event(OEE, ev.line, ev.machine, fields, ev.at)
    if isinstance(ev, AlertChanged):
        ev = ev.alert
    if isinstance(ev, Alert):
        tags = {"line": ev.labels.get("line"), "machine": ev.labels.get("machine"),
                "rule_id": ev.rule_id, "fingerprint": ev.fingerprint}
        fields = {"severity": str(ev.severity), "state": str(ev.state), "message": ev.message,
                  "labels": json.dumps(ev.labels, sort_keys=True),
                  "last_seen_ns": to_ns(ev.last_seen), "value": _opt_float(ev.value),
                  "acknowledged_by": ev.acknowledged_by,
                  "acknowledged_at_ns": _opt_ns(ev.acknowledged_at),
                  "resolved_at_ns": _opt_ns(ev.resolved_at)}
        return _event(ALERT, tags, fields, ev.first_seen)
    raise TypeError(f"the historian does not store {type(ev).__name__}")


def encode_coding(after: DowntimeEvent) -> Record:
    """A person's coding of a stop: rewrites only the manual fields of the same point."""
    fields = {"id": after.id, "manual_reason_code": after.reason_code,
              "manual_reason_text": after.reason_text, "note": after.note,
              "coded_by": after.coded_by}
    return _event(DOWNTIME, {"line": after.line, "machine": after.machine}, fields, after.start)


def encode_audit(before: DowntimeEvent, after: DowntimeEvent, by: str, at: datetime) -> Record:
    tags = {"line": after.line, "machine": after.machine, "downtime_id": after.id}
    fields = {"by": by, "before": downtime_json(before), "after": downtime_json(after)}
    return _event(AUDIT, tags, fields, at)


def _event(measurement: str, tags: dict[str, Any], fields: dict[str, Any], at: datetime) -> Record:
    ts = to_ns(at)
    return Record(encode_point(measurement, tags, fields, ts), "event", True, ts)


def _machine_event(measurement: str, line: str | None, machine: str | None,
                   fields: dict[str, Any], at: datetime) -> Record:
    """_event for the measurements tagged with line and machine only, whose series keys
    are few (one per machine) and cached: escaping them was most of an event's cost."""
    ts = to_ns(at)
    return Record(encode_line(_line_machine_key(measurement, line, machine), fields, ts),
                  "event", True, ts)


@lru_cache(maxsize=65_536)  # a bound far above any plant's machines x measurements
def _line_machine_key(measurement: str, line: str | None, machine: str | None) -> str:
    return series_key(measurement, {"line": line, "machine": machine})


def _opt_float(v: float | None) -> float | None:
    return None if v is None else float(v)


def _opt_ns(ts: datetime | None) -> int | None:
    return None if ts is None else to_ns(ts)


# --- reading points back (both stores hand rows as tag/field dicts) ------------------


_CATEGORIES: dict[str | None, DowntimeCategory] = {
    None: DowntimeCategory.UNPLANNED, "": DowntimeCategory.UNPLANNED,
    **{str(c): c for c in DowntimeCategory}}


def category_of(stored: str | None) -> DowntimeCategory:
    """A stop's stored category; none (or "") is unplanned."""
    return _CATEGORIES.get(stored) or DowntimeCategory(stored)


def downtime_from_row(row: Mapping[str, Any], ts_ns: int) -> DowntimeEvent:
    manual = row.get("manual_reason_code")
    category = row.get("category")
    end_ns = row.get("end_ns")
    return DowntimeEvent(
        id=row["id"], line=row.get("line") or "", machine=row["machine"], start=from_ns(ts_ns),
        end=None if end_ns is None else from_ns(int(end_ns)),
        reason_code=manual if manual is not None else row.get("reason_code"),
        reason_text=row.get("manual_reason_text") if manual is not None
        else row.get("reason_text"),
        # (a dict, not the enum's call: a month of stops is read at once)
        category=_CATEGORIES.get(category) or DowntimeCategory(category),
        micro_stop=bool(row.get("micro_stop") or False),
        note=row.get("note"), coded_by=row.get("coded_by"))


def downtime_json(ev: DowntimeEvent) -> str:
    d = asdict(ev)
    d["start"] = to_ns(ev.start)
    d["end"] = None if ev.end is None else to_ns(ev.end)
    return json.dumps(d, sort_keys=True)


def downtime_from_json(text: str) -> DowntimeEvent:
    d = json.loads(text)
    d["start"] = from_ns(d["start"])
    d["end"] = None if d["end"] is None else from_ns(d["end"])
    d["category"] = DowntimeCategory(d["category"])
    return DowntimeEvent(**d)


def oee_from_row(row: Mapping[str, Any], ts_ns: int) -> OeeSnapshot:
    def opt(name: str) -> float | None:
        v = row.get(name)
        return None if v is None else float(v)

    figures = OeeFigures(
        planned_time_s=float(row["planned_time_s"]), run_time_s=float(row["run_time_s"]),
        ideal_cycle_time_s=float(row["ideal_cycle_time_s"]),
        total_count=int(row["total_count"]), good_count=int(row["good_count"]),
        availability=opt("availability"), performance=opt("performance"),
        quality=opt("quality"), oee=opt("oee"), losses_s=json.loads(row.get("losses") or "{}"),
        calendar_time_s=opt("calendar_time_s"), teep=opt("teep"),
        technical_efficiency=opt("technical_efficiency"), scrap_ratio=opt("scrap_ratio"),
        failures=int(row.get("failures") or 0), micro_stops=int(row.get("micro_stops") or 0),
        mtbf_s=opt("mtbf_s"), mttr_s=opt("mttr_s"))
    return OeeSnapshot(from_ns(ts_ns), row.get("line") or "", row.get("machine") or None,
                       figures, row.get("shift") or None, bool(row.get("final") or False))


def parts_from_row(row: Mapping[str, Any], ts_ns: int) -> PartsProduced:
    ict = row.get("ideal_cycle_time_s")
    return PartsProduced(row.get("line") or "", row["machine"], from_ns(ts_ns),
                         int(row.get("good") or 0), int(row.get("reject") or 0),
                         None if ict is None else float(ict))
