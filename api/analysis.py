"""Maintenance figures from history: Pareto of stop reasons, MTBF and MTTR.

Both take the stops that *started* in the window, each with its whole duration (an open
stop: so far), the same rows and durations GET /api/v1/downtime lists, so a technician
can add them up by hand. The store adds them up (`HistoryQuery.downtime_by_reason`,
`downtime_by_machine`, `time_in_state`); these functions only combine its totals.

- Pareto: minutes and count per reason; uncoded stops are one row (reason null).
- MTBF = operating time / failures, MTTR = failure downtime / failures (ARCHITECTURE.md).
  A failure is an ended unplanned stop that is not a micro-stop (what the live OEE counts
  as a breakdown). Operating time is the OEE run time's states in the window: running,
  idle (starved/blocked) and micro-stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import fsum
from typing import Literal

from api.schemas import ParetoRow, Reliability
from collector.historian.totals import MachineTotal, ReasonTotal
from linemon.model import DowntimeCategory, MachineState

OPERATING = frozenset({MachineState.RUNNING, MachineState.IDLE})


def pareto(totals: Iterable[ReasonTotal],
           sort: Literal["minutes", "count"] = "minutes") -> list[ParetoRow]:
    minutes: dict[str | None, float] = {}
    counts: dict[str | None, int] = {}
    texts: dict[str | None, str | None] = {}
    for t in totals:  # one per reason
        minutes[t.reason_code] = t.duration_us / 60_000_000
        counts[t.reason_code] = t.count
        texts[t.reason_code] = t.reason_text
    by_count = sort == "count"
    total = sum(counts.values()) if by_count else fsum(minutes.values())
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


def reliability(line: str, machine: str, seconds_in_state: Mapping[MachineState, float],
                totals: Iterable[MachineTotal]) -> Reliability:
    failures = failure_us = micro_us = 0
    for t in totals:
        if t.category is not DowntimeCategory.UNPLANNED:
            continue
        if t.micro_stop:
            micro_us += t.duration_us
        elif t.ended:
            failures += t.count
            failure_us += t.duration_us + t.negative_us
    failure_s = failure_us / 1_000_000
    operating = fsum([micro_us / 1_000_000, *(
        s for state, s in seconds_in_state.items() if state in OPERATING)])
    return Reliability(
        line=line, machine=machine, failures=failures, failure_downtime_s=round(failure_s, 3),
        operating_time_s=round(operating, 3),
        mtbf_s=round(operating / failures, 3) if failures else None,
        mttr_s=round(failure_s / failures, 3) if failures else None)
