"""The shift calendar: midnight, the clock changes, no-production days, maintenance windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from linemon.config import CalendarConfig, ConfigError, parse_config
from rules.calendar import ShiftCalendar

BERLIN = "Europe/Berlin"


def calendar(**extra) -> ShiftCalendar:
    config = CalendarConfig.model_validate({"shifts": [
        {"name": "early", "start": "06:00", "end": "14:00", "days": ["mon", "tue", "wed", "thu",
                                                                    "fri"],
         "breaks": [{"start": "09:00", "end": "09:30"}]},
        {"name": "night", "start": "22:00", "end": "06:00",
         "breaks": [{"name": "meal", "start": "02:30", "end": "03:00"},
                    {"start": "04:00", "end": "04:15"}]},
    ], **extra})
    return ShiftCalendar(config, BERLIN)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_a_night_shift_crosses_midnight_and_belongs_to_the_day_it_starts() -> None:
    cal = calendar()
    shift = cal.shift_at(utc("2024-03-05T01:00:00+01:00"))
    assert shift is not None and shift.name == "night" and shift.day == date(2024, 3, 4)
    assert shift.start == utc("2024-03-04T22:00:00+01:00")
    assert shift.end == utc("2024-03-05T06:00:00+01:00")
    assert shift.planned_s == 8 * 3600 - 45 * 60
    assert cal.shift_at(utc("2024-03-05T06:00:00+01:00")).name == "early"  # type: ignore[union-attr]


@pytest.mark.parametrize(("night", "hours", "meal_minutes"), [
    ("2024-03-30", 7, 30),  # spring: 02:00 CET -> 03:00 CEST; 02:30 does not exist
    ("2024-10-26", 9, 30),  # autumn: 03:00 CEST -> 02:00 CET; 02:30 is its first occurrence
])
def test_the_night_of_a_clock_change_has_its_real_length(night: str, hours: int,
                                                         meal_minutes: int) -> None:
    cal = calendar()
    day = date.fromisoformat(night)
    (shift,) = [s for s in cal.shifts_between(utc(f"{night}T23:00:00+00:00"),
                                              utc(f"{night}T23:00:01+00:00"))]
    assert shift.day == day and shift.end - shift.start == timedelta(hours=hours)
    meal = shift.breaks[0]
    # a break lasts its wall-clock length, even across the change
    assert meal.reason == "meal"
    assert (meal.end - meal.start) == timedelta(minutes=meal_minutes)
    assert shift.planned_s == pytest.approx(
        hours * 3600 - sum((b.end - b.start).total_seconds() for b in shift.breaks))
    # every instant of the night is in exactly this shift, the repeated hour included
    t = shift.start
    while t < shift.end:
        assert cal.shift_at(t) == shift
        t += timedelta(minutes=7)


def test_breaks_in_the_skipped_and_the_repeated_hour() -> None:
    cal = calendar()
    spring = cal.shift_at(utc("2024-03-31T01:00:00+01:00"))
    assert spring is not None
    # 02:30 does not exist that night: read with the offset before the change it is 03:30
    # summer time, and the meal lasts its half hour from there
    meal = spring.breaks[0]
    assert (meal.start, meal.end) == (utc("2024-03-31T03:30:00+02:00"),
                                      utc("2024-03-31T04:00:00+02:00"))
    autumn = cal.shift_at(utc("2024-10-27T01:00:00+02:00"))
    assert autumn is not None
    meal = autumn.breaks[0]  # the first 02:30 (summer time), for half an hour
    assert (meal.start, meal.end) == (utc("2024-10-27T02:30:00+02:00"),
                                      utc("2024-10-27T03:00:00+02:00"))


def test_weekdays_holidays_and_ranges_are_no_production_days() -> None:
    cal = calendar(holidays=["2024-03-06", "2024-12-23..2024-12-27"])
    saturday = utc("2024-03-09T08:00:00+01:00")
    assert cal.shift_at(saturday) is None  # early runs Monday to Friday
    assert cal.shift_at(utc("2024-03-06T08:00:00+01:00")) is None  # a holiday
    # the night starting on the evening before a holiday runs; the holiday's own does not
    assert cal.shift_at(utc("2024-03-06T01:00:00+01:00")) is not None
    assert cal.shift_at(utc("2024-03-07T01:00:00+01:00")) is None
    for d in range(23, 28):
        assert cal.shift_at(utc(f"2024-12-{d}T08:00:00+01:00")) is None
    assert cal.shift_at(utc("2024-12-30T08:00:00+01:00")) is not None


def test_maintenance_windows_reduce_planned_time_of_what_they_cover() -> None:
    cal = calendar(maintenance=[
        {"start": "2024-03-04T08:45:00+01:00", "end": "2024-03-04T10:00:00+01:00",
         "lines": ["l1"], "reason": "press inspection"},
        {"start": "2024-03-04T12:00:00+01:00", "end": "2024-03-04T13:00:00+01:00",
         "machines": ["m2"]},
    ])
    at = utc("2024-03-04T07:00:00+01:00")
    plant = cal.shift_at(at)
    line = cal.scoped("l1").shift_at(at)
    m1 = cal.scoped("l1", "m1").shift_at(at)
    m2 = cal.scoped("l2", "m2").shift_at(at)
    assert plant is not None and line is not None and m1 is not None and m2 is not None
    assert plant.planned_s == 8 * 3600 - 30 * 60
    # 08:45-10:00 overlaps the 09:00-09:30 break: the overlap counts once
    assert line.planned_s == m1.planned_s == 8 * 3600 - 75 * 60
    assert m2.planned_s == 8 * 3600 - 30 * 60 - 3600
    found = line.planned_down_at(utc("2024-03-04T09:10:00+01:00"))
    assert found is not None and found.kind == "maintenance" and found.reason == "press inspection"
    assert line.planned_between(utc("2024-03-04T08:00:00+01:00"),
                                utc("2024-03-04T11:00:00+01:00")) == 3 * 3600 - 75 * 60


def test_bad_calendar_entries_are_named_in_the_config_error() -> None:
    text = """
site: {name: s}
calendar:
  shifts: [{name: a, start: "06:00", end: "14:00"}]
  holidays: ["2024-12-27..2024-12-23"]
  maintenance: [{start: "2024-03-04T10:00:00+01:00", end: "2024-03-04T09:00:00+01:00"},
                {start: "2024-03-04T10:00:00+01:00", end: "2024-03-04T11:00:00+01:00",
                 machines: [nope]}]
sources: [{kind: mqtt, name: gw}]
lines: [{id: l1, machines: [{id: m1, source: gw, ideal_cycle_time_s: 2,
                             tags: {good_count: {topic: t}}}]}]
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    paths = [issue.path for issue in err.value.issues]
    assert "calendar.holidays" in paths and "calendar.maintenance[0]" in paths
    fixed = text.replace('"2024-12-27..2024-12-23"', '"2024-12-23..2024-12-27"').replace(
        '{start: "2024-03-04T10:00:00+01:00", end: "2024-03-04T09:00:00+01:00"},', "")
    with pytest.raises(ConfigError) as err:
        parse_config(fixed)
    assert [i.path for i in err.value.issues] == ["calendar.maintenance[0].machines[0]"]
