"""Maintenance figures from history: Pareto of stop reasons, MTBF and MTTR.

Both take the stops that *started* in the window, each with its whole duration (an open
stop: so far), the same rows and durations GET /api/v1/downtime lists, so a technician
can add them up by hand.

- Pareto: minutes and count per reason; uncoded stops are one row (reason null).
- MTBF = operating time / failures, MTTR = failure downtime / failures (ARCHITECTURE.md).
  A failure is an ended unplanned stop that is not a micro-stop (what the live OEE counts
  as a breakdown). Operating time is the OEE run time's states in the window: running,
  idle (starved/blocked) and micro-stops.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from api.schemas import ParetoRow, Reliability
from collector.historian import StateInterval
from linemon.model import DowntimeCategory, DowntimeEvent, MachineState

OPERATING = frozenset({MachineState.RUNNING, MachineState.IDLE})


def pareto(events: Iterable[DowntimeEvent], now: datetime,
           sort: Literal["minutes", "count"] = "minutes") -> list[ParetoRow]:
    minutes: dict[str | None, float] = defaultdict(float)
    counts: dict[str | None, int] = defaultdict(int)
    texts: dict[str | None, str | None] = {}
    for ev in events:
        minutes[ev.reason_code] += max(0.0, ev.duration_s(now)) / 60
        counts[ev.reason_code] += 1
        texts.setdefault(ev.reason_code, ev.reason_text)
    by_count = sort == "count"
    total = sum(counts.values()) if by_count else sum(minutes.values())
    # Ties broken by the other measure, then by code, so the order never depends on the store.
    order = sorted(counts, key=lambda c: (
        -(counts[c] if by_count else minutes[c]), -(minutes[c] if by_count else counts[c]),
        c is None, c or ""))
    rows, running = [], 0.0
    for code in order:
        part = (counts[code] if by_count else minutes[code]) / total if total else 0.0
        running += part
        rows.append(ParetoRow(reason_code=code, reason_text=texts[code], count=counts[code],
                              minutes=round(minutes[code], 4), share=round(part, 6),
                              cumulative_share=round(min(running, 1.0), 6)))
    return rows


def reliability(line: str, machine: str, timeline: Iterable[StateInterval],
                events: Iterable[DowntimeEvent], now: datetime) -> Reliability:
    failures = failure_s = micro_s = 0.0
    for ev in events:
        if ev.category is not DowntimeCategory.UNPLANNED:
            continue
        if ev.micro_stop:
            micro_s += max(0.0, ev.duration_s(now))
        elif ev.end is not None:
            failures += 1
            failure_s += ev.duration_s()
    operating = micro_s + sum((iv.end - iv.start).total_seconds()
                              for iv in timeline if iv.state in OPERATING)
    n = int(failures)
    return Reliability(
        line=line, machine=machine, failures=n, failure_downtime_s=round(failure_s, 3),
        operating_time_s=round(operating, 3),
        mtbf_s=round(operating / n, 3) if n else None,
        mttr_s=round(failure_s / n, 3) if n else None)
