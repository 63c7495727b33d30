"""Which machine holds the line back: Roser's active period method.

A machine is *active* while it works or is kept from working by itself (running, down,
changeover) and *inactive* while it waits for the others (starved, blocked) or is not
planned to work (planned stop; offline is unknown and counts as inactive). An active
period is an uninterrupted stretch of activity. At any instant the machine with the
longest active period is the momentary bottleneck: it is the one the others wait for.

Over a window (Roser, Nakano, Tanaka 2002): where the bottleneck passes from one machine
to the next and their active periods overlap, the overlap is a *shifting* bottleneck and
counts for both; the rest of each machine's time as bottleneck is *sole*. The machine
with the largest sole + shifting share is the main bottleneck of the window.

Live, the periods still running are measured up to now (their final length is not known).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from linemon.model import MachineState

ACTIVE = frozenset({MachineState.RUNNING, MachineState.DOWN, MachineState.CHANGEOVER})
Span = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class BottleneckShare:
    machine: str
    sole_s: float
    shifting_s: float
    share: float | None  # (sole + shifting) / the window's analysed time

    @property
    def total_s(self) -> float:
        return self.sole_s + self.shifting_s


@dataclass(frozen=True, slots=True)
class BottleneckReport:
    start: datetime
    end: datetime
    analysed_s: float  # the window minus the excluded (planned down) time
    shares: list[BottleneckShare]  # largest first
    main: str | None  # the main bottleneck: the largest sole + shifting time


@dataclass(slots=True)
class ActivityLog:
    """One machine's active periods, kept back to a horizon."""

    periods: list[list[datetime | None]] = field(default_factory=list)  # [start, end|None]

    def on_state(self, at: datetime, state: MachineState) -> None:
        active = state in ACTIVE
        is_open = bool(self.periods) and self.periods[-1][1] is None
        if active and not is_open:
            self.periods.append([at, None])
        elif not active and is_open:
            self.periods[-1][1] = at

    def current_start(self) -> datetime | None:
        if self.periods and self.periods[-1][1] is None:
            return self.periods[-1][0]
        return None

    def spans(self, now: datetime) -> list[Span]:
        out: list[Span] = []
        for start, end in self.periods:
            assert start is not None
            out.append((start, end if end is not None else max(now, start)))
        return out

    def forget_before(self, horizon: datetime) -> None:
        keep = 0
        while keep < len(self.periods) and (self.periods[keep][1] or horizon) < horizon:
            keep += 1
        del self.periods[:keep]


def momentary(logs: dict[str, ActivityLog], now: datetime) -> tuple[str, datetime] | None:
    """The machine with the longest active period running now, and since when."""
    best: tuple[str, datetime] | None = None
    for machine, log in logs.items():
        start = log.current_start()
        if start is not None and (best is None or start < best[1]):
            best = (machine, start)
    return best


def shares(spans: dict[str, list[Span]], start: datetime, end: datetime,
           excluded: list[Span] | None = None) -> BottleneckReport:
    """Sole and shifting bottleneck time of each machine over [start, end).

    `spans`: each machine's active periods, sorted; `excluded`: time not analysed (breaks).
    """
    excluded = excluded or []
    order = list(spans)
    cuts = {start, end}
    for periods in spans.values():
        for a, b in periods:
            if a < end and b > start:
                cuts.update(t for t in (a, b) if start < t < end)
    for a, b in excluded:
        cuts.update(t for t in (a, b) if start < t < end)
    times = sorted(cuts)
    # sweep the elementary segments, each machine's period covering it found by a cursor
    cursor = dict.fromkeys(order, 0)
    stints: list[tuple[str, Span, datetime, datetime]] = []  # machine, its period, from, to
    ex = sorted(excluded)
    for t0, t1 in pairwise(times):
        if any(a <= t0 < b for a, b in ex):
            continue
        best: tuple[str, Span] | None = None
        for machine in order:
            periods, i = spans[machine], cursor[machine]
            while i < len(periods) and periods[i][1] <= t0:
                i += 1
            cursor[machine] = i
            if i < len(periods) and periods[i][0] <= t0:
                p = periods[i]
                if best is None or p[1] - p[0] > best[1][1] - best[1][0]:
                    best = (machine, p)
        if best is None:
            continue
        if stints and stints[-1][0] == best[0] and stints[-1][1] == best[1] \
                and stints[-1][3] == t0:
            stints[-1] = (best[0], best[1], stints[-1][2], t1)
        else:
            stints.append((best[0], best[1], t0, t1))
    sole = dict.fromkeys(order, 0.0)
    shifting = dict.fromkeys(order, 0.0)
    overlaps: list[list[Span]] = [[] for _ in stints]
    for i in range(len(stints) - 1):
        m1, p1, a1, _ = stints[i]
        m2, p2, _, b2 = stints[i + 1]
        if m1 == m2:
            continue
        lo, hi = max(p1[0], p2[0], a1), min(p1[1], p2[1], b2)
        if hi <= lo:
            continue
        both = _seconds(lo, hi) - _excluded_s(ex, lo, hi)
        shifting[m1] += both
        shifting[m2] += both
        # the overlap is shifting time, not sole time, in whichever stint it lies
        overlaps[i].append((lo, hi))
        overlaps[i + 1].append((lo, hi))
    for j, (machine, _, a, b) in enumerate(stints):
        shared = _union([(max(a, lo), min(b, hi)) for lo, hi in overlaps[j]])
        sole[machine] += (_seconds(a, b) - _excluded_s(ex, a, b)
                          - sum(_seconds(lo, hi) - _excluded_s(ex, lo, hi) for lo, hi in shared))
    analysed = _seconds(start, end) - _excluded_s(ex, start, end)
    out = [BottleneckShare(m, sole[m], shifting[m],
                           (sole[m] + shifting[m]) / analysed if analysed > 0 else None)
           for m in order]
    out.sort(key=lambda s: -s.total_s)
    main = out[0].machine if out and out[0].total_s > 0 else None
    return BottleneckReport(start, end, analysed, out, main)


def _seconds(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


def _excluded_s(excluded: list[Span], a: datetime, b: datetime) -> float:
    return sum(_seconds(max(a, x0), min(b, x1)) for x0, x1 in excluded)


def _union(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


HORIZON = timedelta(hours=36)  # how far back the engine keeps active periods
