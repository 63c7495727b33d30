"""Ground truth: what the simulation did, recorded as it happened, and the expected figures."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from simulators.calendar import ShiftCalendar, ShiftWindow
from simulators.oee import DEFINITIONS, Interval, is_micro_stop, window_figures
from simulators.scenario import Scenario
from simulators.signals import StateCode, iso_ms

TRUTH_VERSION = 1
_CATEGORY = {
    StateCode.FAULT: "unplanned",
    StateCode.OFF: "unplanned",
    StateCode.CHANGEOVER: "changeover",
    StateCode.PLANNED_STOP: "planned",
}


@dataclass
class _MachineLog:
    line: str
    intervals: list[list] = field(default_factory=list)  # [state, code, text, start_ms]
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    good: int = 0
    reject: int = 0
    restarts: list[int] = field(default_factory=list)


class TruthRecorder:
    """Listens to the simulation's own state changes and parts; builds the truth document."""

    def __init__(
        self, scenario: Scenario, seed: int, start_ms: int, calendar: ShiftCalendar | None
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.start_ms = start_ms
        self.calendar = calendar
        self.logs = {m.id: _MachineLog(line.id) for line, m in scenario.machines()}
        self.outages: list[list[int | None]] = []

    def on_state(self, machine: str, t_ms: int, state: StateCode, code: int, text: str) -> None:
        intervals = self.logs[machine].intervals
        if intervals and intervals[-1][3] == t_ms:
            intervals.pop()  # several changes at one instant: only the last one lasts
        if intervals and intervals[-1][:3] == [state, code, text]:
            return
        intervals.append([state, code, text, t_ms])

    def on_part(self, machine: str, t_ms: int, good: bool) -> None:
        log = self.logs[machine]
        window = self.calendar.shift_at(t_ms) if self.calendar else None
        bucket = log.counts[window.key if window else "-"]
        if good:
            log.good += 1
            bucket[0] += 1
        else:
            log.reject += 1
            bucket[1] += 1

    def on_restart(self, machine: str, t_ms: int) -> None:
        self.logs[machine].restarts.append(t_ms)

    def on_link(self, t_ms: int, up: bool) -> None:
        if not up:
            self.outages.append([t_ms, None])
        elif self.outages and self.outages[-1][1] is None:
            self.outages[-1][1] = t_ms

    # -- the document ----------------------------------------------------------

    def build(self, now_ms: int, counters: dict[str, dict[str, int]], complete: bool) -> dict:
        sc = self.scenario
        windows = self._windows(now_ms)
        return {
            "version": TRUTH_VERSION,
            "scenario": sc.name,
            "site": sc.site,
            "seed": self.seed,
            "start": iso_ms(self.start_ms),
            "end": iso_ms(now_ms),
            "complete": complete,
            "micro_stop_threshold_s": sc.micro_stop_threshold_s,
            "definitions": DEFINITIONS,
            "reasons": {str(code): text for code, text in sorted(sc.reasons.items())},
            "timezone": sc.calendar.timezone if sc.calendar else "UTC",
            "shifts": [_window_doc(w, self.start_ms, now_ms) for w in windows],
            "mqtt_outages": [
                {"start": iso_ms(s), "end": iso_ms(e) if e is not None else None}
                for s, e in self.outages
            ],
            "lines": [
                {"id": line.id, "name": line.name, "machines": [m.id for m in line.machines]}
                for line in sc.lines
            ],
            "machines": {
                m.id: self._machine_doc(line.id, m.id, now_ms, windows, counters[m.id])
                for line, m in sc.machines()
            },
        }

    def _windows(self, now_ms: int) -> list[ShiftWindow]:
        if self.calendar is None:
            return [ShiftWindow("all", self.start_ms, now_ms)]
        return self.calendar.shifts_between(self.start_ms, now_ms)

    def _machine_doc(self, line_id, machine_id, now_ms, windows, counters) -> dict:
        sc = self.scenario
        spec = sc.machine(machine_id)
        log = self.logs[machine_id]
        threshold_ms = round(sc.micro_stop_threshold_s * 1000)
        intervals = _close(log.intervals, now_ms)
        stops = []
        for iv in intervals:
            if iv.state not in _CATEGORY:
                continue
            stops.append(
                {
                    "start": iso_ms(iv.start_ms),
                    "end": iso_ms(iv.end_ms),
                    "duration_s": iv.duration_ms / 1000,
                    "state": iv.state.label,
                    "category": _CATEGORY[iv.state],
                    "reason_code": iv.code,
                    "reason_text": iv.text,
                    "micro_stop": is_micro_stop(iv, threshold_ms),
                    "open": iv.end_ms == now_ms and iv is intervals[-1],
                }
            )
        shifts = []
        for w in windows:
            good, reject = log.counts.get(w.key if self.calendar else "-", (0, 0))
            start, end = max(w.start_ms, self.start_ms), min(w.end_ms, now_ms)
            breaks = [(b_start, b_end) for b_start, b_end, _ in w.breaks]
            figures = window_figures(
                intervals, start, end, good, reject, spec.ideal_cycle_time_s, threshold_ms,
                breaks,
            )
            shifts.append({"shift": w.name, "start": iso_ms(start), "end": iso_ms(end), **figures})
        return {
            "line": line_id,
            "name": spec.name,
            "protocol": spec.protocol,
            "ideal_cycle_time_s": spec.ideal_cycle_time_s,
            "totals": {"good": log.good, "reject": log.reject, "total": log.good + log.reject},
            "counters": dict(counters),
            "plc_restarts": [iso_ms(t) for t in log.restarts],
            "intervals": [
                {
                    "state": iv.state.label,
                    "state_code": int(iv.state),
                    "start": iso_ms(iv.start_ms),
                    "end": iso_ms(iv.end_ms),
                    "reason_code": iv.code,
                    "reason_text": iv.text,
                }
                for iv in intervals
            ],
            "stops": stops,
            "shifts": shifts,
        }


def _close(raw: list[list], now_ms: int) -> list[Interval]:
    out = []
    for i, (state, code, text, start) in enumerate(raw):
        end = raw[i + 1][3] if i + 1 < len(raw) else now_ms
        if end > start or i + 1 == len(raw):
            out.append(Interval(state, code, text, start, max(end, start)))
    return out


def _window_doc(w: ShiftWindow, start_ms: int, now_ms: int) -> dict:
    return {
        "name": w.name,
        "start": iso_ms(w.start_ms),
        "end": iso_ms(w.end_ms),
        "window_start": iso_ms(max(w.start_ms, start_ms)),
        "window_end": iso_ms(min(w.end_ms, now_ms)),
        "breaks": [{"name": name, "start": iso_ms(s), "end": iso_ms(e)} for s, e, name in w.breaks],
    }
