"""Linemon against the simulator's ground truth: figures per machine and shift, and stops.

The truth's figures are compared as written (`simulators/oee.py` DEFINITIONS): breaks are
planned down time from the calendar whatever the machine did meanwhile, and PLC restarts
are breakdowns, as in linemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from linemon.model import DowntimeEnded, DowntimeEvent, DowntimeStarted, Event
from tests.accuracy.replay import Replay

FIGURES = ("availability", "performance", "quality", "oee")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class ShiftCheck:
    scenario: str
    machine: str
    shift: str
    truth: dict[str, float | None]
    linemon: dict[str, float | None]
    failures: tuple[int, int]  # truth, linemon
    mtbf: tuple[float | None, float | None]
    mttr: tuple[float | None, float | None]

    def delta_pp(self, name: str) -> float | None:
        t, m = self.truth[name], self.linemon[name]
        if t is None or m is None:
            return None if t is None and m is None else float("inf")
        return (m - t) * 100


def shift_checks(name: str, replay: Replay, truth: dict[str, Any]) -> list[ShiftCheck]:
    out: list[ShiftCheck] = []
    for mid, doc in truth["machines"].items():
        tracker = replay.engine.trackers[mid]
        accounts = [a for a in (*tracker.closed_accounts, tracker.account) if a is not None]
        for ts_doc in doc["shifts"]:
            start = ts(ts_doc["start"])
            account = next(a for a in accounts if a.shift.start <= start < a.shift.end)
            figures = account.figures()
            out.append(ShiftCheck(
                name, mid, ts_doc["shift"], {k: ts_doc[k] for k in FIGURES},
                {k: getattr(figures, k) for k in FIGURES},
                (ts_doc["failures"], figures.failures),
                (ts_doc["mtbf_s"], figures.mtbf_s), (ts_doc["mttr_s"], figures.mttr_s)))
    return out


@dataclass
class StopCheck:
    matched: list[tuple[dict[str, Any], DowntimeEvent]]
    missed: list[dict[str, Any]]
    phantom: list[DowntimeEvent]
    problems: list[str]  # micro-stop flag, category or reason that differ

    @property
    def worst_delta_s(self) -> float:
        worst = 0.0
        for truth, stop in self.matched:
            worst = max(worst, abs((stop.start - ts(truth["start"])).total_seconds()))
            if not truth["open"]:
                assert stop.end is not None
                worst = max(worst, abs((stop.end - ts(truth["end"])).total_seconds()))
        return worst


def engine_stops(events: list[Event]) -> list[DowntimeEvent]:
    latest: dict[str, DowntimeEvent] = {}
    for e in events:
        if isinstance(e, DowntimeStarted | DowntimeEnded):
            latest[e.event.id] = e.event
    return sorted(latest.values(), key=lambda s: (s.machine, s.start))


def stop_check(truth: dict[str, Any], stops: list[DowntimeEvent], tolerance_s: float = 1.0,
               machines: set[str] | None = None) -> StopCheck:
    result = StopCheck([], [], [], [])
    for mid, doc in truth["machines"].items():
        if machines is not None and mid not in machines:
            continue
        mine = [s for s in stops if s.machine == mid]
        used: set[int] = set()
        for t in doc["stops"]:
            if t["duration_s"] == 0 and not t["open"]:
                continue
            start = ts(t["start"])
            match = next((s for s in mine if id(s) not in used
                          and abs((s.start - start).total_seconds()) <= tolerance_s), None)
            if match is None:
                result.missed.append({"machine": mid, **t})
                continue
            used.add(id(match))
            result.matched.append((t, match))
            result.problems += _differences(mid, t, match)
        result.phantom += [s for s in mine if id(s) not in used]
    return result


def _differences(mid: str, truth: dict[str, Any], stop: DowntimeEvent) -> list[str]:
    out = []
    where = f"{mid} {truth['start']}"
    if stop.micro_stop != truth["micro_stop"] and not truth["open"]:  # open: not known yet
        out.append(f"{where}: micro_stop {stop.micro_stop} vs truth {truth['micro_stop']}")
    if str(stop.category) != truth["category"]:
        out.append(f"{where}: category {stop.category} vs truth {truth['category']}")
    if truth["category"] == "planned":  # breaks and "no shift" are named by the calendar
        if stop.reason_text != truth["reason_text"]:
            out.append(f"{where}: reason {stop.reason_text!r} vs truth {truth['reason_text']!r}")
    else:
        code = str(truth["reason_code"]) if truth["reason_code"] else None  # 0: no code
        if stop.reason_code != code:
            out.append(f"{where}: reason code {stop.reason_code} vs truth {code}")
    if truth["open"] and stop.end is not None and stop.end != ts(truth["end"]):
        out.append(f"{where}: open in the truth, ended at {stop.end} here")
    return out
