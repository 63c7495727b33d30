"""Historical OEE per shift and per day: the engine's final figures, or a replay.

A closed shift that lies whole inside the window is answered with the final `OeeSnapshot`
the engine wrote when the shift closed: it carries the ideal cycle times (products) in
force then. Anything else (a day, a shift cut by the window, a shift without a final
snapshot, e.g. from before linemon wrote them) is recomputed with the live accounting
itself, `rules.oee.ShiftAccount`, under the configured `OeePolicy`: every state interval
is booked into the shift it falls in, a stop ends as a failure or a micro-stop as its
downtime event says, and parts come from the counts at today's ideal cycle times. The
line figure uses the line's ideal cycle time (`rules.shift_report.line_ideal_cycle_time`),
as the board does.

The reads (the stops, each machine's timeline and counts, the final snapshots) do not
depend on each other and are in flight together, a few machines at a time: a store that
answers several at once (influxd) does, and one that answers in turn (SQLite's reader
thread) reads the next while the last answer is converted on the event loop.

A day is a production day: the shifts that start on that local date.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Awaitable, Sequence
from dataclasses import fields
from datetime import date, datetime, timedelta
from typing import Any, Literal

from api.history_access import all_downtime, caller_errors
from api.limits import Window
from api.schemas import Oee, OeePeriod
from collector.historian import CountBucket, OeeSnapshot, StateInterval
from linemon.config import LineConfig, MachineConfig
from linemon.model import DowntimeEvent, MachineState, OeeFigures
from linemon.roles import Runtime
from rules.calendar import ShiftInstance
from rules.engine import line_oee as _line_oee  # the live line figure's formula
from rules.oee import ShiftAccount
from rules.shift_report import line_ideal_cycle_time

STOP_LOOKBACK = timedelta(days=1)  # a stop open at the window's start began before it
READS_IN_FLIGHT = 4  # machines whose timeline and counts are read at once
_SUMMED = [f.name for f in fields(ShiftAccount)
           if f.name not in ("shift", "ideal_cycle_time_s", "_open_stop_s")]


async def oee_periods(lm: Runtime, line: LineConfig, machine: MachineConfig | None,
                      window: Window, by: Literal["shift", "day"]) -> list[OeePeriod]:
    until = min(window.end, lm.clock())
    if until <= window.start:
        return []
    shifts = lm.engine.calendar.shifts_between(window.start, until)
    bounds = [(max(window.start, s.start), min(until, s.end)) for s in shifts]
    q = lm.historian.query
    machines = [machine] if machine is not None else list(line.machines)
    every_s = _count_every(shifts, until - window.start)
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

    async def read(m: MachineConfig) -> tuple[list[StateInterval], list[CountBucket]]:
        async with gate:
            with caller_errors():
                return await _together(q.state_timeline(m.id, window.start, until),
                                       q.counts(m.id, window.start, until, every_s))

    stops, finals, *reads = await _together(
        all_downtime(q, start=window.start - STOP_LOOKBACK, end=until, line=line.id,
                     machine=None if machine is None else machine.id),
        _finals(lm, line, machine, shifts, bounds, by),
        *(read(m) for m in machines))
    own = _stops_by_machine(stops)
    accounts = {m.id: _replay(m, timeline, own.get(m.id, _NO_STOPS),
                              _parts_per_shift(counts, shifts, window.start), shifts, bounds,
                              until)
                for m, (timeline, counts) in zip(machines, reads, strict=True)}
    groups = _groups(shifts, by)
    end_id = line.end_machine or line.machines[-1].id
    line_ict = line_ideal_cycle_time(line)
    policy = lm.engine.policy
    out: list[OeePeriod] = []
    for day, name, idx in groups:
        start, end = bounds[idx[0]][0], bounds[idx[-1]][1]
        figures: dict[str | None, OeeFigures] = {
            m.id: _merged([accounts[m.id][i] for i in idx]).figures(policy) for m in machines}
        if machine is None:  # the line: output at its end machine, the line's cycle time
            at_end = figures[end_id]
            line_figures = _line_oee(at_end, at_end.good_count, line_ict)
            assert line_figures is not None
            figures[None] = line_figures
        key = shifts[idx[0]].key if name is not None else None
        for mid, f in figures.items():
            final = finals.get((mid, key)) if key is not None else None
            out.append(OeePeriod(
                line=line.id, machine=mid, day=day, shift=name, start=start, end=end,
                oee=Oee.of(final or f), source="final" if final else "replay"))
    return out


async def _together(*reads: Awaitable[Any]) -> list[Any]:
    """The reads' answers, in order, read at once. The first error is raised as it is (the
    app's handlers turn it into a 422 or a 503) and the other reads are cancelled."""
    tasks = [asyncio.ensure_future(r) for r in reads]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def _finals(lm: Runtime, line: LineConfig, machine: MachineConfig | None,
                  shifts: Sequence[ShiftInstance], bounds: Sequence[tuple[datetime, datetime]],
                  by: str) -> dict[tuple[str | None, str], OeeFigures]:
    """The final figures of the shifts that closed whole inside the window, by machine (None:
    the line) and shift key. Only per shift: a day's figure cannot be summed from ratios."""
    whole = {s.key for s, (lo, hi) in zip(shifts, bounds, strict=True)
             if lo == s.start and hi == s.end}
    if by != "shift" or not whole:
        return {}
    q = lm.historian.query
    start, end = shifts[0].start, shifts[-1].end + timedelta(microseconds=1)
    reads = ([q.oee_snapshots(start=start, end=end, machine=machine.id, line=line.id)]
             if machine is not None else
             [q.oee_snapshots(start=start, end=end, line=line.id),
              *(q.oee_snapshots(start=start, end=end, machine=m.id, line=line.id)
                for m in line.machines)])
    with caller_errors():
        found: list[list[OeeSnapshot]] = await _together(*reads)
    return {(s.machine, s.shift): s.figures for snaps in found for s in snaps
            if s.final and s.shift in whole}


def _groups(shifts: Sequence[ShiftInstance], by: str) -> list[tuple[date, str | None, list[int]]]:
    if by == "shift":
        return [(s.day, s.name, [i]) for i, s in enumerate(shifts)]
    days: dict[date, list[int]] = {}
    for i, s in enumerate(shifts):
        days.setdefault(s.day, []).append(i)
    return [(day, None, idx) for day, idx in days.items()]


def _count_every(shifts: Sequence[ShiftInstance], span: timedelta) -> int:
    """Width of the count buckets: the widest on which every shift boundary falls.

    Buckets are epoch-aligned, so each then lies whole inside one shift, and a month of a
    line is a few hundred buckets per machine instead of 43,200 minutes. Boundaries off
    the minute fall back to minutes (quarter hours beyond 60 days), as before.
    """
    width = 0
    for s in shifts:
        width = math.gcd(width, int(s.start.timestamp()), int(s.end.timestamp()))
    if width >= 60:
        return width
    return 60 if span <= timedelta(days=60) else 900


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


class _Stops:
    """One machine's stops by start time, for finding the stop a DOWN interval belongs to."""

    def __init__(self, stops: Sequence[DowntimeEvent]) -> None:
        self.stops = stops
        self.starts = [s.start for s in stops]

    def at(self, t: datetime) -> DowntimeEvent | None:
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return None
        stop = self.stops[i]
        return stop if stop.end is None or t < stop.end else None


_NO_STOPS = _Stops([])


def _stops_by_machine(stops: Sequence[DowntimeEvent]) -> dict[str | None, _Stops]:
    by_machine: dict[str | None, list[DowntimeEvent]] = {}
    for stop in stops:
        by_machine.setdefault(stop.machine, []).append(stop)
    return {m: _Stops(sorted(own, key=lambda e: e.start)) for m, own in by_machine.items()}


def _replay(machine: MachineConfig, timeline: Sequence[StateInterval], stops: _Stops,
            parts: Sequence[tuple[int, int]], shifts: Sequence[ShiftInstance],
            bounds: Sequence[tuple[datetime, datetime]], until: datetime) -> list[ShiftAccount]:
    """Book [lo, hi) of each shift the way the live tracker booked it, knowing what it knew
    at `until`: a stop is a micro-stop while shorter than the threshold (a performance loss)
    and a failure, in the shift it began in, once it reaches it, ended or not. Shift after
    shift, each from the first interval that ends after its `lo`."""
    ends = [iv.end for iv in timeline]  # the timeline is in time order, without overlaps
    stop_of = _stops_of_down(machine, timeline, stops, until)
    counted: set[str] = set()  # stops already counted (a stop can span shifts)
    accounts = []
    for shift, (lo, hi), (good, reject) in zip(shifts, bounds, parts, strict=True):
        account = ShiftAccount(shift, machine.ideal_cycle_time_s)
        for i in range(bisect.bisect_right(ends, lo), len(timeline)):
            iv = timeline[i]
            if iv.start >= hi:
                break
            a, b = max(iv.start, lo), min(iv.end, hi)
            if b <= a:
                continue
            booked = account.book(a, b, iv.state)
            stop = stop_of.get(i)
            if stop is None:
                continue
            stop_id, micro, countable = stop
            if micro:
                account.reclassify_micro(booked)
            if not countable or stop_id in counted:
                continue
            counted.add(stop_id)  # in the shift it began in, or the first one booked
            if micro:
                account.micro_stops += 1
            else:
                account.failures += 1
        account.good, account.reject = good, reject
        accounts.append(account)
    return accounts


def _stops_of_down(machine: MachineConfig, timeline: Sequence[StateInterval], stops: _Stops,
                   until: datetime) -> dict[int, tuple[str, bool, bool]]:
    """The stop each DOWN interval belongs to (by the interval's index), once for all the
    shifts it spans: (id, whether a micro-stop as known at `until`, whether counted: an
    open stop is not while it may still end as a micro-stop)."""
    out = {}
    for i, iv in enumerate(timeline):
        if iv.state is not MachineState.DOWN:
            continue
        stop = stops.at(iv.start)
        if stop is None:
            continue
        ended = stop.end is not None and stop.end <= until
        if ended:
            micro = stop.micro_stop
        else:
            micro = (until - stop.start).total_seconds() < machine.micro_stop_threshold_s
        out[i] = (stop.id, micro, ended or not micro)
    return out


def _merged(accounts: Sequence[ShiftAccount]) -> ShiftAccount:
    if len(accounts) == 1:
        return accounts[0]
    total = ShiftAccount(accounts[0].shift, accounts[0].ideal_cycle_time_s)
    for account in accounts:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(account, name))
    return total
