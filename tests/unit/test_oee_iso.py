"""OEE and the ISO 22400-2 KPIs of one machine, computed by hand from the definitions.

The plant (tests/unit/plant.py): site in UTC, early shift 06:00-14:00 with a break
09:00-09:30, late 14:00-22:00, night 22:00-06:00; the machine's ideal cycle time is 2 s.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    OeeSnapshot,
    PartsProduced,
)
from rules.engine import Engine
from tests.unit.plant import T0, machine, plant, sample


def s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def feed(engine: Engine, steps) -> list:
    """("tick", t) or (signal, value, t) for machine m1; t in seconds after 06:00."""
    events = []
    for step in steps:
        if step[0] == "tick":
            events += engine.on_tick(s(step[1]))
        else:
            signal, value, at = step
            events += engine.on_sample(sample("m1", signal, value, s(at)))
    return events


def h(hours: float, minutes: float = 0, seconds: float = 0) -> float:
    """Seconds after 06:00 for a clock time, e.g. h(9, 30) is 09:30."""
    return (hours - 6) * 3600 + minutes * 60 + seconds


EARLY = [  # the early shift of the worked example
    ("state", 1, 0), ("good_count", 0, 0), ("reject_count", 0, 0),
    ("fault_code", 17, h(7)), ("state", 4, h(7)),  # breakdown 07:00-07:10
    ("state", 1, h(7, 10)), ("fault_code", 0, h(7, 10)),
    ("fault_code", 5, h(7, 30)), ("state", 5, h(7, 30)),  # changeover 07:30-07:45
    ("state", 1, h(7, 45)), ("fault_code", 0, h(7, 45)),
    ("state", 4, h(8)), ("state", 1, h(8, 0, 20)),  # micro-stop 20 s
    ("state", 2, h(8, 10)), ("state", 1, h(8, 15)),  # starved 5 min
    # 09:00-09:30 break: the PLC says nothing about it; the calendar knows
    ("good_count", 9000, h(13, 59, 59)), ("reject_count", 100, h(13, 59, 59)),
    ("tick", h(14)),
]


def test_a_shift_by_hand() -> None:
    engine = Engine(plant(), T0)
    events = feed(engine, EARLY)
    (report,) = engine.reports["l1"]
    f = report.machines["m1"]
    assert f is not None
    planned = 8 * 3600 - 1800  # [PBT] shift minus break = 27 000 s
    run = planned - 600 - 900  # [APT] minus breakdown and changeover = 25 500 s
    assert (f.planned_time_s, f.run_time_s) == (planned, run)
    assert (f.total_count, f.good_count, f.ideal_cycle_time_s) == (9100, 9000, 2.0)
    assert f.availability == pytest.approx(25500 / 27000)
    assert f.performance == pytest.approx(2.0 * 9100 / 25500)  # micro-stop and idle inside
    assert f.quality == pytest.approx(9000 / 9100)
    assert f.oee == pytest.approx(2.0 * 9000 / 27000)  # = fully productive time / PBT
    losses = f.losses_s
    assert losses["breakdowns"] == 600 and losses["setup_changeover"] == 900
    assert losses["small_stops"] == 320  # 20 s micro-stop + 300 s starved
    assert (losses["small_stops.micro_stops"], losses["small_stops.idle"]) == (20, 300)
    assert losses["reduced_speed"] == pytest.approx(run - 320 - 2.0 * 9100)
    assert (losses["startup_rejects"], losses["production_rejects"]) == (0, 200)
    six = ("breakdowns", "setup_changeover", "small_stops", "reduced_speed",
           "startup_rejects", "production_rejects")
    assert sum(losses[k] for k in six) == pytest.approx(planned - 2.0 * 9000)
    assert losses["planned_stops"] == 1800  # the break, outside the base
    assert f.calendar_time_s == 8 * 3600
    assert f.teep == pytest.approx(2.0 * 9000 / (8 * 3600))
    assert f.technical_efficiency == pytest.approx(run / (run + 600))
    assert f.scrap_ratio == pytest.approx(100 / 9100)
    assert (f.failures, f.micro_stops) == (1, 1)
    assert (f.mtbf_s, f.mttr_s) == (run, 600)
    final = [e for e in events if isinstance(e, OeeSnapshot) and e.final]
    assert {(e.machine, e.shift) for e in final} == {("m1", "2026-03-02/early"),
                                                      (None, "2026-03-02/early")}
    assert next(e for e in final if e.machine == "m1").figures == f


def test_planned_stops_can_count_against_availability() -> None:
    engine = Engine(plant(oee={"planned_stops_count_against_availability": True}), T0)
    feed(engine, EARLY)
    f = engine.reports["l1"][0].machines["m1"]
    assert f is not None
    assert f.planned_time_s == 8 * 3600  # the break stays in the base ...
    assert f.run_time_s == 25500  # ... as a loss: it is not run time
    assert f.availability == pytest.approx(25500 / 28800)
    assert f.oee == pytest.approx(2.0 * 9000 / 28800)


def test_a_break_inside_a_stop_is_planned_time_only_for_the_break() -> None:
    engine = Engine(plant(), T0)
    events = feed(engine, [("state", 1, 0), ("state", 4, h(8, 50)), ("state", 1, h(9, 40)),
                           ("tick", h(10))])
    (stop,) = [e.event for e in events if isinstance(e, DowntimeEnded)]
    assert stop.duration_s() == 50 * 60 and not stop.micro_stop  # one stop, as it happened
    f = engine.machine_view("m1", s(h(10))).oee
    assert f is not None
    assert f.planned_time_s == 4 * 3600 - 1800
    assert f.losses_s["breakdowns"] == 20 * 60  # 08:50-09:00 and 09:30-09:40
    assert (f.failures, f.mttr_s) == (1, 1200)


def test_a_stop_across_midnight_is_one_event_in_the_night_shift() -> None:
    engine = Engine(plant(), T0)
    events = feed(engine, [("state", 1, h(22)), ("state", 4, h(23, 50)),
                           ("state", 1, h(24, 20)), ("tick", h(30))])
    (stop,) = [e.event for e in events if isinstance(e, DowntimeEnded)]
    assert stop.start.day == 2 and stop.end is not None and stop.end.day == 3
    night = engine.trackers["m1"].account_of("2026-03-02/night")
    assert night is not None
    f = night.figures()
    assert (f.planned_time_s, f.losses_s["breakdowns"], f.failures) == (8 * 3600, 1800, 1)
    assert engine.reports["l1"][-1].shift.name == "night"


def test_the_night_of_the_spring_change_has_seven_planned_hours() -> None:
    config = plant(site={"name": "t", "timezone": "Europe/Berlin"})
    start = T0.replace(day=28, hour=20)  # Saturday 2026-03-28, 21:00 CET
    engine = Engine(config, start)
    for minutes in range(0, 12 * 60, 10):
        at = start + timedelta(minutes=minutes)
        engine.on_sample(sample("m1", "state", 1, at))
        engine.on_sample(sample("m1", "good_count", minutes * 5, at))
        engine.on_tick(at)
    night = engine.trackers["m1"].account_of("2026-03-28/night")
    assert night is not None
    f = night.figures()
    assert f.planned_time_s == 7 * 3600 and f.availability == 1.0
    assert f.total_count == 7 * 60 * 5  # a part every 12 s, every minute of 7 hours


def test_no_planned_time_is_not_planned_not_zero_and_not_an_error() -> None:
    holiday = plant(calendar={"holidays": ["2026-03-02"], "shifts": [
        {"name": "early", "start": "06:00", "end": "14:00"}]})
    engine = Engine(holiday, T0)
    feed(engine, [("state", 1, 0), ("good_count", 0, 0), ("good_count", 50, 100),
                  ("tick", 200)])
    assert engine.machine_view("m1", s(200)).oee is None  # no shift at all
    view = engine.line_view("l1", s(200))
    assert view.oee is None and view.forecast is None and view.moving_target is None
    engine = Engine(plant(), T0)  # a whole shift in planned stop
    feed(engine, [("state", 6, 0), ("tick", h(14))])
    f = engine.reports["l1"][0].machines["m1"]
    assert f is not None and f.planned_time_s == 0
    assert (f.availability, f.performance, f.quality, f.oee) == (None, None, None, None)
    assert f.teep is None and f.mtbf_s is None
    engine = Engine(plant(), T0)  # planned, but down all along: zero, not "not planned"
    feed(engine, [("state", 4, 0), ("tick", h(8))])
    f = engine.machine_view("m1", s(h(8))).oee
    assert f is not None and f.availability == 0 and f.oee == 0


def test_a_plc_restart_resets_the_counter_and_is_a_breakdown() -> None:
    engine = Engine(plant(machines=[machine("m1", counter_max=9999)]), T0)
    events = feed(engine, [
        ("state", 1, 0), ("good_count", 9980, 0), ("good_count", 9990, 20),  # +10
        ("state", 0, 21), ("good_count", 0, 22),  # PLC off: counter back to 0, not a wrap
        ("state", 1, 29), ("good_count", 3, 35),  # +3 since the restart
        ("good_count", 9998, 35 + 2 * 9995), ("good_count", 2, 35 + 2 * 9999),  # a real wrap
        ("tick", 20100)])
    parts = [e.good for e in events if isinstance(e, PartsProduced)]
    assert parts == [10, 3, 9995, 4]
    (stop,) = [e.event for e in events if isinstance(e, DowntimeEnded)]
    assert stop.reason_text == "PLC off" and stop.duration_s() == 8
    assert not stop.micro_stop  # a PLC restart is a breakdown, however short
    f = engine.machine_view("m1", s(20100)).oee
    assert f is not None and f.failures == 1 and f.losses_s["breakdowns"] == 8


def test_a_short_stop_is_a_small_stop_until_it_outlasts_the_threshold() -> None:
    engine = Engine(plant(), T0)
    feed(engine, [("state", 1, 0), ("state", 4, 100)])
    live = engine.machine_view("m1", s(110)).oee
    assert live is not None
    assert (live.losses_s["small_stops.micro_stops"], live.losses_s["breakdowns"]) == (10, 0)
    live = engine.machine_view("m1", s(145)).oee
    assert live is not None  # 45 s: a breakdown now, counted in the shift it began in
    assert (live.losses_s["small_stops.micro_stops"], live.losses_s["breakdowns"]) == (0, 45)
    assert live.failures == 1


def test_a_micro_stop_across_the_shift_change_moves_in_both_shifts() -> None:
    engine = Engine(plant(), T0)
    feed(engine, [("state", 1, 0), ("state", 4, h(13, 59, 50)), ("tick", h(14, 0, 5)),
                  ("state", 1, h(14, 0, 10))])
    t = engine.trackers["m1"]
    early, late = t.account_of("2026-03-02/early"), t.account_of("2026-03-02/late")
    assert early is not None and late is not None
    assert (early.micro_stop_s, early.down_s, early.micro_stops) == (10, 0, 1)
    assert (late.micro_stop_s, late.down_s, late.micro_stops) == (10, 0, 0)


def test_rejects_soon_after_a_stop_are_startup_rejects() -> None:
    engine = Engine(plant(oee={"startup_window_s": 300}), T0)
    feed(engine, [("state", 1, 0), ("good_count", 0, 0), ("reject_count", 0, 0),
                  ("state", 5, 600), ("state", 1, 1200),  # changeover ends at 1200
                  ("reject_count", 3, 1300), ("good_count", 40, 1300),  # startup
                  ("reject_count", 5, 1600), ("good_count", 180, 1600),  # production
                  ("tick", 1800)])
    f = engine.machine_view("m1", s(1800)).oee
    assert f is not None
    assert (f.losses_s["startup_rejects"], f.losses_s["production_rejects"]) == (6, 4)


def test_each_product_brings_its_ideal_cycle_time_and_closed_shifts_keep_theirs() -> None:
    m1 = machine("m1", products={"small": {"ideal_cycle_time_s": 1.5},
                                 "large": {"ideal_cycle_time_s": 4.0}})
    m1["tags"]["product"] = {"topic": "t/m1/product"}
    engine = Engine(plant(machines=[m1]), T0)
    events = feed(engine, [
        ("state", 1, 0), ("good_count", 0, 0), ("product", "small", 0),
        ("good_count", 1000, 2000), ("product", "large", 2000), ("good_count", 1500, 4400),
        ("product", "unknown", 4400), ("good_count", 1600, 4800),  # the default, 2.0 s
        ("tick", h(14))])
    assert [e.ideal_cycle_time_s for e in events if isinstance(e, PartsProduced)] == [
        1.5, 4.0, 2.0]
    f = engine.reports["l1"][0].machines["m1"]
    assert f is not None
    ideal = 1000 * 1.5 + 500 * 4.0 + 100 * 2.0
    assert f.performance == pytest.approx(ideal / f.run_time_s)
    assert f.ideal_cycle_time_s == pytest.approx(ideal / 1600)  # the mean over the parts
    # a new ideal cycle time (a config reload) values new parts, not the closed shift's
    tracker = engine.trackers["m1"]
    tracker.settings = replace(tracker.settings, products={"small": 1.0, "large": 3.0})
    closed = tracker.account_of("2026-03-02/early")
    assert closed is not None and closed.figures() == f


def test_a_stop_in_a_maintenance_window_is_planned_and_pages_nobody() -> None:
    window = {"start": "2026-03-02T07:00:00Z", "end": "2026-03-02T08:00:00Z",
              "machines": ["m1"], "reason": "gearbox service"}
    config = plant(calendar={"maintenance": [window], "shifts": [
        {"name": "early", "start": "06:00", "end": "14:00"}]})
    engine = Engine(config, T0)
    events = feed(engine, [("state", 1, 0), ("state", 4, h(7, 5)), ("tick", h(7, 30)),
                           ("state", 1, h(8, 10)), ("tick", h(9))])
    (stop,) = [e.event for e in events if isinstance(e, DowntimeEnded)]
    assert stop.category is DowntimeCategory.PLANNED and stop.reason_text == "gearbox service"
    f = engine.machine_view("m1", s(h(9))).oee
    assert f is not None
    assert f.planned_time_s == 2 * 3600  # 06:00-09:00 minus the hour of maintenance
    assert f.losses_s["breakdowns"] == 600 and f.failures == 0  # the overrun 08:00-08:10
    (alert,) = [a for a in engine.alerts.active() if a.rule_id == "machine_stopped"] or [None]
    assert alert is None or alert.silenced_by is not None


def test_a_counter_that_sat_still_through_a_long_stop_and_drops_was_reset() -> None:
    engine = Engine(plant(machines=[machine("m1", counter_max=9999)]), T0)
    events = feed(engine, [
        ("state", 1, 0), ("good_count", 9600, 0), ("state", 4, 10),  # an hour's breakdown
        ("state", 0, 3610), ("good_count", 0, 3611), ("state", 1, 3620),  # then a restart
        ("good_count", 4, 3630), ("tick", 3700)])
    assert [e.good for e in events if isinstance(e, PartsProduced)] == [4]  # not 400 + 4
