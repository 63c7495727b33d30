"""Expected ISO 22400 figures of one machine over one window, from its state intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simulators.signals import StateCode

DEFINITIONS = {
    "time_base": "All figures are computed from the published state intervals (StateCode and "
    "FaultCode as served), clipped to the window [start, end) of each shift; timestamps are "
    "simulated time, ISO 8601 UTC.",
    "breaks": "a shift's breaks come from the calendar (local wall-clock start, lasting their "
    "wall-clock length: 02:30-03:00 is half an hour on a clock-change night too; a time in the "
    "spring gap is read with the offset before the change). A break is planned down time "
    "whatever the machine does meanwhile: state time inside a break is in no bucket (not "
    "downtime, not run time; time_by_state_s is the time outside breaks, break_time_s the "
    "breaks'), and parts completed inside a break still count.",
    "planned_time": "planned production time = window time - break time - time in planned_stop "
    "outside breaks (no shift, scripted planned stops); planned_stop_s is that planned down "
    "time (breaks included).",
    "micro_stop": "a fault (StateCode 4) interval shorter than micro_stop_threshold_s, judged "
    "on the whole interval even where it crosses the window edge or a break. Micro-stops are "
    "a performance loss and stay inside run time. A PLC restart (off) is never a micro-stop.",
    "unplanned_downtime": "time in fault that is not a micro-stop, plus time in off (PLC "
    "restart), outside breaks.",
    "run_time": "run time = planned production time - unplanned downtime - changeover time. "
    "Run time includes running, starved and blocked (idle time, a performance loss) and "
    "micro-stops.",
    "availability": "run time / planned production time (null if planned time is 0).",
    "performance": "ideal cycle time x total count / run time (null if run time is 0).",
    "quality": "good count / total count (null if nothing was produced).",
    "oee": "availability x performance x quality.",
    "counts": "a part is counted in the window in which its cycle completed; good parts move "
    "downstream, rejects are scrapped.",
    "failures": "number of breakdowns that started in the window outside a break: fault stops "
    "that are not micro-stops and PLC restarts (off); mtbf_s = run time / failures, mttr_s = "
    "unplanned downtime in the window / failures.",
}


@dataclass(frozen=True, slots=True)
class Interval:
    state: StateCode
    code: int
    text: str
    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def is_micro_stop(interval: Interval, threshold_ms: int) -> bool:
    return interval.state is StateCode.FAULT and interval.duration_ms < threshold_ms


def is_failure(interval: Interval, threshold_ms: int) -> bool:
    """A breakdown: a fault that is not a micro-stop, or a PLC restart (off) however short."""
    if interval.state is StateCode.OFF:
        return True
    return interval.state is StateCode.FAULT and not is_micro_stop(interval, threshold_ms)


def window_figures(
    intervals: Sequence[Interval],
    start_ms: int,
    end_ms: int,
    good: int,
    reject: int,
    ideal_cycle_time_s: float,
    micro_threshold_ms: int,
    breaks: Sequence[tuple[int, int]] = (),
) -> dict[str, object]:
    """`breaks`: the calendar's breaks [start_ms, end_ms) of the shift (planned down time)."""
    spans = _merged(breaks, start_ms, end_ms)
    break_ms = sum(b - a for a, b in spans)
    by_state = {s.label: 0 for s in StateCode}
    micro_ms = 0
    failure_ms = 0
    failures = 0
    micro_stops = 0
    for iv in intervals:
        lo, hi = max(iv.start_ms, start_ms), min(iv.end_ms, end_ms)
        if hi <= lo:
            continue
        overlap = hi - lo - _inside(lo, hi, spans)  # time outside the breaks
        by_state[iv.state.label] += overlap
        starts_here = start_ms <= iv.start_ms < end_ms and not _inside(
            iv.start_ms, iv.start_ms + 1, spans
        )
        if is_failure(iv, micro_threshold_ms):
            failure_ms += overlap
            failures += starts_here
        elif is_micro_stop(iv, micro_threshold_ms):
            micro_ms += overlap
            micro_stops += starts_here
    window_ms = end_ms - start_ms
    planned_stop_ms = break_ms + by_state["planned_stop"]
    planned_ms = window_ms - planned_stop_ms
    unplanned_ms = failure_ms
    run_ms = planned_ms - unplanned_ms - by_state["changeover"]
    total = good + reject
    availability = run_ms / planned_ms if planned_ms > 0 else None
    performance = ideal_cycle_time_s * total / (run_ms / 1000) if run_ms > 0 else None
    quality = good / total if total else None
    oee = (
        availability * performance * quality
        if None not in (availability, performance, quality)
        else None
    )
    return {
        "window_s": _s(window_ms),
        "time_by_state_s": {k: _s(v) for k, v in by_state.items()},
        "break_time_s": _s(break_ms),
        "planned_stop_s": _s(planned_stop_ms),
        "planned_time_s": _s(planned_ms),
        "unplanned_downtime_s": _s(unplanned_ms),
        "micro_stop_time_s": _s(micro_ms),
        "changeover_time_s": _s(by_state["changeover"]),
        "run_time_s": _s(run_ms),
        "good": good,
        "reject": reject,
        "total": total,
        "availability": _r(availability),
        "performance": _r(performance),
        "quality": _r(quality),
        "oee": _r(oee),
        "failures": failures,
        "micro_stops": micro_stops,
        "mtbf_s": _s(run_ms / failures) if failures else None,
        "mttr_s": _s(failure_ms / failures) if failures else None,
    }


def _merged(spans: Sequence[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """`spans` clipped to [lo, hi), sorted and merged so that overlaps count once."""
    out: list[tuple[int, int]] = []
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _inside(lo: int, hi: int, spans: Sequence[tuple[int, int]]) -> int:
    """Milliseconds of [lo, hi) inside `spans`."""
    return sum(max(0, min(hi, b) - max(lo, a)) for a, b in spans)


def _s(ms: float) -> float:
    return round(ms / 1000, 3)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
