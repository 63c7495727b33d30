"""Quiet hours: windows of site-local time in which lesser alerts wait for the morning.

A window that ends at or before it starts crosses midnight and belongs to the day it
started on: `{days: [fri], start: "22:00", end: "06:00"}` covers Friday 22:00 to
Saturday 06:00. Pure: the caller passes `now`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from linemon.model import Severity
from rules.notify.config import ALL_DAYS, QuietHours

RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class QuietSchedule:
    def __init__(self, windows: list[QuietHours], timezone: str) -> None:
        self.windows = list(windows)
        self.tz = ZoneInfo(timezone)

    def holding(self, now: datetime, line: str | None, severity: Severity) -> QuietHours | None:
        """The window that holds back an alert of this line and severity now, if any."""
        if not self.windows:
            return None
        local = now.astimezone(self.tz)
        for window in self.windows:
            if window.lines is not None and line not in window.lines:
                continue
            if RANK[severity] >= RANK[window.min_severity]:
                continue
            if _inside(window, local):
                return window
        return None


def _inside(window: QuietHours, local: datetime) -> bool:
    t = local.time().replace(tzinfo=None)
    today = ALL_DAYS[local.weekday()]
    yesterday = ALL_DAYS[(local - timedelta(days=1)).weekday()]
    if window.start < window.end:
        return today in window.days and window.start <= t < window.end
    # Crosses midnight: the evening part is today's window, the morning part yesterday's.
    if t >= window.start:
        return today in window.days
    return t < window.end and yesterday in window.days
