"""Shift calendar: which shift an instant belongs to and how much of a span was planned.

Shift and break times are local wall-clock times in the site's timezone; every
instance is turned into UTC once, so durations across a DST change are real
elapsed seconds (a night shift on the autumn change lasts 9 hours, not 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from linemon.config import ALL_DAYS, CalendarConfig, ShiftConfig


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    name: str
    day: date  # the local date the shift starts on
    start: datetime  # UTC
    end: datetime  # UTC
    breaks: tuple[tuple[datetime, datetime], ...]  # UTC, clipped to the shift
    target: int | None

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.name}"

    @property
    def planned_s(self) -> float:
        return self.planned_between(self.start, self.end)

    def planned_between(self, a: datetime, b: datetime) -> float:
        """Seconds of [a, b) inside the shift and outside its breaks."""
        lo, hi = max(a, self.start), min(b, self.end)
        if hi <= lo:
            return 0.0
        total = (hi - lo).total_seconds()
        for b_start, b_end in self.breaks:
            overlap = (min(hi, b_end) - max(lo, b_start)).total_seconds()
            if overlap > 0:
                total -= overlap
        return total

    def in_break(self, t: datetime) -> bool:
        return any(b_start <= t < b_end for b_start, b_end in self.breaks)


class ShiftCalendar:
    def __init__(self, config: CalendarConfig, timezone: str) -> None:
        self._config = config
        self._tz = ZoneInfo(timezone)
        self._holidays = {date.fromisoformat(d) for d in config.holidays}

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
        if day in self._holidays or ALL_DAYS[day.weekday()] not in shift.days:
            return None
        start = self._utc(day, shift.start)
        end_day = day if shift.end > shift.start else day + timedelta(days=1)
        end = self._utc(end_day, shift.end)
        breaks = []
        for brk in shift.breaks:
            b_day = day if brk.start >= shift.start else day + timedelta(days=1)
            b_start = self._utc(b_day, brk.start)
            b_end_day = b_day if brk.end > brk.start else b_day + timedelta(days=1)
            b_end = self._utc(b_end_day, brk.end)
            b_start, b_end = max(b_start, start), min(b_end, end)
            if b_end > b_start:
                breaks.append((b_start, b_end))
        return ShiftInstance(shift.name, day, start, end, tuple(breaks), shift.target)

    def _utc(self, day: date, at: object) -> datetime:
        local = datetime.combine(day, at, tzinfo=self._tz)  # type: ignore[arg-type]
        return local.astimezone(UTC)
