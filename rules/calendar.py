"""Shift calendar: which shift an instant belongs to and how much of a span was planned.

Shift and break times are local wall-clock times in the site's timezone; every
instance is turned into UTC once, so durations across a DST change are real
elapsed seconds (a night shift on the autumn change lasts 9 hours, not 8; on the
spring change 7). A local time that does not exist (inside the spring gap) is read
with the offset before the change, as zoneinfo does for `fold=0` (02:30 is 03:30
summer time); one that exists twice (autumn) is its first occurrence. Shifts end
when the wall clock says so; a break keeps its wall-clock length.

Planned down time [ISO 22400 PDT] inside a shift is its breaks plus the planned
maintenance windows that cover the line or machine asked about (`scoped`); it
never counts as planned production time, whatever the machine did meanwhile.
No-production days (holidays, ranges of them, and weekdays a shift does not run
on) are judged on the local date a shift starts on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from linemon.config import ALL_DAYS, CalendarConfig, ShiftConfig, holiday_dates


@dataclass(frozen=True, slots=True)
class PlannedDown:
    """A stretch of planned down time inside a shift: a break or a maintenance window."""

    start: datetime  # UTC, clipped to the shift
    end: datetime
    reason: str
    kind: str  # "break" | "maintenance"


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    name: str
    day: date  # the local date the shift starts on
    start: datetime  # UTC
    end: datetime  # UTC
    breaks: tuple[PlannedDown, ...]  # UTC, clipped to the shift
    target: int | None
    maintenance: tuple[PlannedDown, ...] = ()
    # breaks and maintenance merged into disjoint, sorted spans (so overlaps count once)
    _down: tuple[tuple[datetime, datetime], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spans = sorted((p.start, p.end) for p in (*self.breaks, *self.maintenance))
        merged: list[tuple[datetime, datetime]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        object.__setattr__(self, "_down", tuple(merged))

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.name}"

    @property
    def planned_s(self) -> float:
        return self.planned_between(self.start, self.end)

    def shift_between(self, a: datetime, b: datetime) -> float:
        """Seconds of [a, b) inside the shift, planned down time included."""
        lo, hi = max(a, self.start), min(b, self.end)
        return max(0.0, (hi - lo).total_seconds())

    def planned_between(self, a: datetime, b: datetime) -> float:
        """Seconds of [a, b) inside the shift and outside its planned down time."""
        lo, hi = max(a, self.start), min(b, self.end)
        if hi <= lo:
            return 0.0
        total = (hi - lo).total_seconds()
        for d_start, d_end in self._down:
            if d_start >= hi:
                break
            overlap = (min(hi, d_end) - max(lo, d_start)).total_seconds()
            if overlap > 0:
                total -= overlap
        return total

    def planned_down_at(self, t: datetime) -> PlannedDown | None:
        """The break or maintenance window `t` falls in (maintenance first), if any."""
        for p in (*self.maintenance, *self.breaks):
            if p.start <= t < p.end:
                return p
        return None

    def in_break(self, t: datetime) -> bool:
        return any(b.start <= t < b.end for b in self.breaks)


class ShiftCalendar:
    def __init__(self, config: CalendarConfig, timezone: str,
                 scope: tuple[str | None, str | None] = (None, None)) -> None:
        self._config = config
        self._tz = ZoneInfo(timezone)
        self._holidays = {d for item in config.holidays for d in holiday_dates(item)}
        self._scope = scope
        line, machine = scope
        self._windows = [w for w in config.maintenance if w.covers(line, machine)]
        self._cache: dict[tuple[str, date], ShiftInstance | None] = {}

    def scoped(self, line: str | None, machine: str | None = None) -> ShiftCalendar:
        """The calendar of one line or machine: the plant's plus the windows that cover it."""
        return ShiftCalendar(self._config, self._tz.key, (line, machine))

    def shift_at(self, t: datetime) -> ShiftInstance | None:
        local_day = t.astimezone(self._tz).date()
        # A shift that started yesterday may still be running (night shift).
        for day in (local_day, local_day - timedelta(days=1)):
            for shift in self._config.shifts:
                instance = self._instance(shift, day)
                if instance is not None and instance.start <= t < instance.end:
                    return instance
        return None

    def shifts_between(self, a: datetime, b: datetime) -> list[ShiftInstance]:
        found: list[ShiftInstance] = []
        day = a.astimezone(self._tz).date() - timedelta(days=1)
        last = b.astimezone(self._tz).date()
        while day <= last:
            for shift in self._config.shifts:
                instance = self._instance(shift, day)
                if instance is not None and instance.start < b and instance.end > a:
                    found.append(instance)
            day += timedelta(days=1)
        return sorted(found, key=lambda s: s.start)

    def _instance(self, shift: ShiftConfig, day: date) -> ShiftInstance | None:
        key = (shift.name, day)
        if key not in self._cache:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = self._build(shift, day)
        return self._cache[key]

    def _build(self, shift: ShiftConfig, day: date) -> ShiftInstance | None:
        if day in self._holidays or ALL_DAYS[day.weekday()] not in shift.days:
            return None
        start = self._utc(day, shift.start)
        end_day = day if shift.end > shift.start else day + timedelta(days=1)
        end = self._utc(end_day, shift.end)
        breaks = []
        for brk in shift.breaks:
            b_day = day if brk.start >= shift.start else day + timedelta(days=1)
            b_start = self._utc(b_day, brk.start)
            # A break lasts what it says on the wall, even when the clock changes during it
            # (02:30-03:00 on the autumn night is half an hour, not an hour and a half).
            b_end = b_start + _wall_length(brk.start, brk.end)
            b_start, b_end = max(b_start, start), min(b_end, end)
            if b_end > b_start:
                breaks.append(PlannedDown(b_start, b_end, brk.name, "break"))
        maintenance = []
        for w in self._windows:
            w_start, w_end = max(w.start.astimezone(UTC), start), min(w.end.astimezone(UTC), end)
            if w_end > w_start:
                maintenance.append(PlannedDown(w_start, w_end, w.reason, "maintenance"))
        return ShiftInstance(shift.name, day, start, end, tuple(breaks), shift.target,
                             tuple(maintenance))

    def _utc(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self._tz).astimezone(UTC)


def _wall_length(start: time, end: time) -> timedelta:
    """From `start` to `end` on a clock face (an end at or before the start is the next day)."""
    day = date(2000, 1, 1)
    a, b = datetime.combine(day, start), datetime.combine(day, end)
    return b - a if b > a else b + timedelta(days=1) - a
