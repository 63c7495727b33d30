"""Shift calendar: shifts and breaks in local time, turned into UTC windows in epoch ms.

Local times are read with `fold=0`: one that exists twice (autumn) is its first occurrence,
one that does not exist (spring gap) takes the offset before the change. Shifts end when the
wall clock says so; a break keeps its wall-clock length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from simulators.signals import to_datetime, to_ms

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class BreakSpec:
    start: time
    end: time
    name: str = "break"


@dataclass(frozen=True, slots=True)
class ShiftSpec:
    """A shift that repeats every day, e.g. 22:00-06:00 (ends the next day)."""

    name: str
    start: time
    end: time
    breaks: tuple[BreakSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    timezone: str
    shifts: tuple[ShiftSpec, ...]


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    """One occurrence of a shift: [start_ms, end_ms) with its breaks, all UTC epoch ms."""

    name: str
    start_ms: int
    end_ms: int
    breaks: tuple[tuple[int, int, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}@{self.start_ms}"

    def contains(self, t_ms: int) -> bool:
        return self.start_ms <= t_ms < self.end_ms

    def break_at(self, t_ms: int) -> str | None:
        for start, end, name in self.breaks:
            if start <= t_ms < end:
                return name
        return None


class ShiftCalendar:
    """Answers: which shift is it, is this a planned stop, when can that change next."""

    def __init__(self, spec: CalendarSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._cached: ShiftWindow | None = None

    def shifts_between(self, start_ms: int, end_ms: int) -> list[ShiftWindow]:
        """Shift occurrences overlapping [start_ms, end_ms), in time order."""
        first = to_datetime(start_ms).astimezone(self.zone).date() - timedelta(days=1)
        last = to_datetime(end_ms).astimezone(self.zone).date()
        found: list[ShiftWindow] = []
        day = first
        while day <= last:
            for window in self._windows_of_day(day):
                if window.end_ms > start_ms and window.start_ms < end_ms:
                    found.append(window)
            day += timedelta(days=1)
        return sorted(found, key=lambda w: w.start_ms)

    def shift_at(self, t_ms: int) -> ShiftWindow | None:
        cached = self._cached
        if cached is not None and cached.contains(t_ms):
            return cached
        for window in self.shifts_between(t_ms, t_ms + 1):
            if window.contains(t_ms):
                self._cached = window
                return window
        return None

    def planned_stop_at(self, t_ms: int) -> str | None:
        """The reason text if `t_ms` is a planned stop ("no shift" or the break's name)."""
        window = self.shift_at(t_ms)
        if window is None:
            return "no shift"
        return window.break_at(t_ms)

    def next_boundary(self, t_ms: int) -> int:
        """The first instant after `t_ms` at which the planned-stop status may change."""
        candidates = []
        for window in self.shifts_between(t_ms, t_ms + 2 * DAY_MS):
            candidates.extend((window.start_ms, window.end_ms))
            for start, end, _ in window.breaks:
                candidates.extend((start, end))
        later = [c for c in candidates if c > t_ms]
        return min(later) if later else t_ms + DAY_MS

    def _windows_of_day(self, day: date) -> tuple[ShiftWindow, ...]:
        return _windows(self.spec, day)


@lru_cache(maxsize=512)
def _windows(spec: CalendarSpec, day: date) -> tuple[ShiftWindow, ...]:
    zone = ZoneInfo(spec.timezone)
    out = []
    for shift in spec.shifts:
        start = _at(zone, day, shift.start)
        end_day = day if shift.end > shift.start else day + timedelta(days=1)
        end = _at(zone, end_day, shift.end)
        breaks = []
        for brk in shift.breaks:
            b_day = day if brk.start >= shift.start else day + timedelta(days=1)
            # A break starts at its wall-clock time and lasts its wall-clock length, even when
            # the clocks change during it (02:30-03:00 on the autumn night is the first 02:30
            # plus half an hour, not an hour and a half; in the spring gap 02:30 is read with
            # the offset before the change, i.e. 03:30 summer time).
            b_start = _at(zone, b_day, brk.start)
            b_end = b_start + _wall_length_ms(brk.start, brk.end)
            b_start, b_end = max(b_start, start), min(b_end, end)
            if b_end > b_start:
                breaks.append((b_start, b_end, brk.name))
        out.append(ShiftWindow(shift.name, start, end, tuple(sorted(breaks))))
    return tuple(out)


def _at(zone: ZoneInfo, day: date, clock: time) -> int:
    return to_ms(datetime.combine(day, clock, tzinfo=zone))


def _wall_length_ms(start: time, end: time) -> int:
    """From `start` to `end` on a clock face (an end at or before the start is the next day)."""
    day = date(2000, 1, 1)
    a, b = datetime.combine(day, start), datetime.combine(day, end)
    length = b - a if b > a else b + timedelta(days=1) - a
    return round(length.total_seconds() * 1000)
