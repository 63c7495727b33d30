"""Line figures: output-based line OEE, each machine's share of the losses, shift progress.

These are built from the machines' figures (rules/oee.py), live and for closed shifts
alike, so the board and the shift report show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from linemon.model import OeeFigures
from rules.calendar import ShiftInstance

# A machine's own losses: what it lost by itself. Idle (starved/blocked) time is left out,
# it is the other machines' loss showing here.
OWN_LOSSES = ("breakdowns", "setup_changeover", "small_stops.micro_stops", "reduced_speed",
              "startup_rejects", "production_rejects")


def line_oee(end: OeeFigures | None, good: int, line_ict: float) -> OeeFigures | None:
    """Output-based line OEE: good parts at the line end x the line's ideal cycle time /
    the planned time at the line end.

    A, P and Q are split so that their product is that OEE: the end machine's availability
    and quality, and performance at the line's ideal cycle time.
    """
    if end is None:
        return None
    planned = end.planned_time_s
    oee = good * line_ict / planned if planned > 0 else None
    teep = None
    if end.calendar_time_s:
        teep = good * line_ict / end.calendar_time_s
    return replace(
        end,
        ideal_cycle_time_s=line_ict,
        good_count=good,
        performance=line_ict * end.total_count / end.run_time_s if end.run_time_s > 0 else None,
        oee=oee,
        losses_s=dict(end.losses_s),
        teep=teep,
    )


@dataclass(frozen=True, slots=True)
class LossShare:
    machine: str
    losses_s: dict[str, float]  # its own losses by kind
    total_s: float
    share: float | None  # of all the line's machines' own losses


def loss_shares(figures: dict[str, OeeFigures | None]) -> list[LossShare]:
    """Each machine's own losses and its share of the line's, largest first."""
    own = {m: {k: f.losses_s.get(k, 0.0) for k in OWN_LOSSES}
           for m, f in figures.items() if f is not None}
    totals = {m: sum(v.values()) for m, v in own.items()}
    line_total = sum(totals.values())
    out = [LossShare(m, own[m], totals[m], totals[m] / line_total if line_total > 0 else None)
           for m in own]
    return sorted(out, key=lambda s: -s.total_s)


@dataclass(frozen=True, slots=True)
class ShiftProgress:
    target: int | None  # good parts planned for the whole shift
    planned_total_s: float  # the shift's planned production time
    elapsed_planned_s: float  # ... of which has passed
    moving_target: float | None  # target x elapsed planned time / planned time
    actual: int
    forecast: float | None  # end-of-shift output at the rate so far


def shift_progress(shift: ShiftInstance, now: datetime, actual: int) -> ShiftProgress:
    planned_total = shift.planned_s
    elapsed = shift.planned_between(shift.start, now)
    moving = None
    if shift.target is not None and planned_total > 0:
        moving = shift.target * elapsed / planned_total
    forecast = actual + actual / elapsed * (planned_total - elapsed) if elapsed > 0 else None
    return ShiftProgress(shift.target, planned_total, elapsed, moving, actual, forecast)
