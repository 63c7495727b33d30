"""Historical OEE per shift and per day, replayed from the state timeline and part counts.

Nothing writes OEE snapshots to the historian yet (no component emits `OeeSnapshot`), so
history is recomputed with the live accounting itself, `rules.oee.ShiftAccount`: every
state interval is booked into the shift it falls in, a stop ends as a failure or a
micro-stop as its downtime event says, and parts come from the counts. The result is
what the board showed at the end of the shift, traceable to the events behind it.

A day is a production day: the shifts that start on that local date.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import date, datetime, timedelta
from typing import Literal

from api.history_access import all_downtime, caller_errors
from api.limits import Window
from api.schemas import Oee, OeePeriod
from collector.historian import CountBucket, StateInterval
from linemon.app import Linemon
from linemon.config import LineConfig, MachineConfig
from linemon.model import DowntimeEvent, MachineState, OeeFigures
from rules.calendar import ShiftInstance
from rules.engine import _line_oee  # the live line figure's formula; see the report
from rules.oee import ShiftAccount

STOP_LOOKBACK = timedelta(days=1)  # a stop open at the window's start began before it
_SUMMED = [f.name for f in fields(ShiftAccount)
           if f.name not in ("shift", "ideal_cycle_time_s", "_open_stop_s")]


async def oee_periods(lm: Linemon, line: LineConfig, machine: MachineConfig | None,
                      window: Window, by: Literal["shift", "day"]) -> list[OeePeriod]:
    until = min(window.end, lm.clock())
    if until <= window.start:
        return []
    shifts = lm.engine.calendar.shifts_between(window.start, until)
    bounds = [(max(window.start, s.start), min(until, s.end)) for s in shifts]
    q = lm.historian.query
    machines = [machine] if machine is not None else list(line.machines)
    stops = await all_downtime(q, start=window.start - STOP_LOOKBACK, end=until, line=line.id)
    every_s = 60 if until - window.start <= timedelta(days=60) else 900
    accounts: dict[str, list[ShiftAccount]] = {}
    for m in machines:
        with caller_errors():
            timeline = await q.state_timeline(m.id, window.start, until)
            counts = await q.counts(m.id, window.start, until, every_s)
        own = sorted((e for e in stops if e.machine == m.id), key=lambda e: e.start)
        parts = _parts_per_shift(counts, shifts, window.start)
        accounts[m.id] = [
            _replay(shift, m.ideal_cycle_time_s, timeline, own, parts[i], lo, hi)
            for i, (shift, (lo, hi)) in enumerate(zip(shifts, bounds, strict=True))]
    groups = _groups(shifts, by)
    end_id = line.end_machine or line.machines[-1].id
    line_ict = max(m.ideal_cycle_time_s for m in line.machines)
    out: list[OeePeriod] = []
    for day, name, idx in groups:
        start, end = bounds[idx[0]][0], bounds[idx[-1]][1]
        figures: dict[str | None, OeeFigures] = {
            m.id: _merged([accounts[m.id][i] for i in idx]).figures() for m in machines}
        if machine is None:  # the line: output at its end machine, the slowest cycle time
            at_end = figures[end_id]
            line_figures = _line_oee(at_end, at_end.good_count, line_ict)
            assert line_figures is not None
            figures[None] = line_figures
        out += [OeePeriod(line=line.id, machine=mid, day=day, shift=name, start=start, end=end,
                          oee=Oee(**asdict(f))) for mid, f in figures.items()]
    return out


def _groups(shifts: Sequence[ShiftInstance], by: str) -> list[tuple[date, str | None, list[int]]]:
    if by == "shift":
        return [(s.day, s.name, [i]) for i, s in enumerate(shifts)]
    days: dict[date, list[int]] = {}
    for i, s in enumerate(shifts):
        days.setdefault(s.day, []).append(i)
    return [(day, None, idx) for day, idx in days.items()]


def _parts_per_shift(counts: Sequence[CountBucket], shifts: Sequence[ShiftInstance],
                     start: datetime) -> list[tuple[int, int]]:
    out = [(0, 0)] * len(shifts)
    starts = [s.start for s in shifts]
    for bucket in counts:
        at = max(bucket.start, start)  # the first bucket is labelled before a cut start
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and at < shifts[i].end and (bucket.good or bucket.reject):
            good, reject = out[i]
            out[i] = (good + bucket.good, reject + bucket.reject)
    return out


def _replay(shift: ShiftInstance, ict: float, timeline: Sequence[StateInterval],
            stops: Sequence[DowntimeEvent], parts: tuple[int, int], lo: datetime,
            hi: datetime) -> ShiftAccount:
    """Book [lo, hi) of one shift the way the live tracker booked it."""
    account = ShiftAccount(shift, ict)
    for iv in timeline:
        a, b = max(iv.start, lo), min(iv.end, hi)
        if b <= a:
            continue
        if iv.state is not MachineState.DOWN:
            account.book(a, b, iv.state)
            continue
        account.stop_started()
        account.book(a, b, iv.state)
        stop = _stop_at(stops, iv.start)
        if stop is not None and stop.end is not None and stop.end <= hi:
            account.stop_ended(stop.micro_stop)  # an open stop is no failure yet, as live
    account.good, account.reject = parts
    return account


def _stop_at(stops: Sequence[DowntimeEvent], t: datetime) -> DowntimeEvent | None:
    i = bisect.bisect_right([s.start for s in stops], t) - 1
    if i < 0:
        return None
    stop = stops[i]
    return stop if stop.end is None or t < stop.end else None


def _merged(accounts: Sequence[ShiftAccount]) -> ShiftAccount:
    if len(accounts) == 1:
        return accounts[0]
    total = ShiftAccount(accounts[0].shift, accounts[0].ideal_cycle_time_s)
    for account in accounts:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(account, name))
    return total
