"""The count buckets historical OEE reads: as wide as possible, never across a shift boundary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from api.oee_history import _count_every
from rules.calendar import ShiftInstance


def shifts(*bounds: tuple[str, str]) -> list[ShiftInstance]:
    day = datetime(2026, 11, 2, tzinfo=UTC)
    out = []
    for i in range(30):
        for start, end in bounds:
            s = day + timedelta(days=i, hours=int(start[:2]), minutes=int(start[3:]))
            e = day + timedelta(days=i, hours=int(end[:2]), minutes=int(end[3:]))
            out.append(ShiftInstance("s", date(2026, 11, 2), s, e if e > s else e + timedelta(1),
                                     (), None))
    return out


def test_three_eight_hour_shifts_read_two_hour_buckets() -> None:
    assert _count_every(shifts(("06:00", "14:00"), ("14:00", "22:00"), ("22:00", "06:00")),
                       timedelta(days=30)) == 7200


def test_a_half_hour_boundary_gives_half_hour_buckets() -> None:
    every = _count_every(shifts(("06:30", "14:30"), ("14:30", "23:00")), timedelta(days=30))
    assert every == 1800


def test_every_boundary_falls_on_a_bucket_start() -> None:
    found = shifts(("05:45", "13:50"), ("13:50", "22:00"))
    every = _count_every(found, timedelta(days=30))
    assert every == 300
    assert all(int(s.start.timestamp()) % every == 0 == int(s.end.timestamp()) % every
               for s in found)


def test_boundaries_off_the_minute_fall_back_to_minutes() -> None:
    odd = shifts(("06:00", "14:00"))
    odd[0] = ShiftInstance("s", odd[0].day, odd[0].start + timedelta(seconds=7), odd[0].end,
                           (), None)
    assert _count_every(odd, timedelta(days=30)) == 60
    assert _count_every(odd, timedelta(days=90)) == 900
