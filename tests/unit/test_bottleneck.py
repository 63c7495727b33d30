"""Roser's active period method, on hand-drawn timelines (minutes after T0)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from linemon.model import MachineState
from rules.bottleneck import HORIZON, ActivityLog, momentary, shares
from rules.engine import Engine
from tests.unit.plant import T0, plant, sample


def m(minutes: float):
    return T0 + timedelta(minutes=minutes)


def spans(*pairs: tuple[float, float]):
    return [(m(a), m(b)) for a, b in pairs]


def test_sole_and_shifting_bottleneck_from_two_overlapping_periods() -> None:
    # A active 0-10, B active 8-20: A is the bottleneck until B's longer period begins;
    # 8-10 both are active: the bottleneck shifts from A to B (shifting, for both)
    report = shares({"A": spans((0, 10)), "B": spans((8, 20))}, m(0), m(20))
    by = {x.machine: x for x in report.shares}
    assert (by["A"].sole_s, by["A"].shifting_s) == (8 * 60, 2 * 60)
    assert (by["B"].sole_s, by["B"].shifting_s) == (10 * 60, 2 * 60)
    assert report.main == "B" and by["B"].share == pytest.approx(12 / 20)


def test_a_machine_that_never_waits_is_the_sole_bottleneck() -> None:
    report = shares({"A": spans((0, 3), (5, 8), (12, 14)), "B": spans((0, 30)),
                     "C": spans((1, 2), (20, 25))}, m(0), m(30))
    assert report.main == "B"
    top = report.shares[0]
    assert (top.machine, top.sole_s, top.shifting_s) == ("B", 1800, 0)


def test_planned_down_time_is_left_out_and_nobody_active_is_no_bottleneck() -> None:
    report = shares({"A": spans((0, 10)), "B": spans((15, 20))}, m(0), m(30),
                    excluded=spans((5, 7)))
    assert report.analysed_s == 28 * 60
    by = {x.machine: x for x in report.shares}
    assert by["A"].sole_s == 8 * 60 and by["B"].sole_s == 5 * 60  # 10-15 and 20-30: none
    assert by["A"].share == pytest.approx(8 / 28)


def test_three_overlapping_periods_never_give_negative_sole_time() -> None:
    report = shares({"A": spans((0, 10)), "B": spans((2, 14)), "C": spans((4, 20))},
                    m(0), m(20))
    assert all(x.sole_s >= 0 and x.shifting_s >= 0 for x in report.shares)
    assert report.main == "C"


def test_the_log_and_the_momentary_bottleneck() -> None:
    a, b = ActivityLog(), ActivityLog()
    a.on_state(m(0), MachineState.RUNNING)
    a.on_state(m(1), MachineState.DOWN)  # still active: one period
    b.on_state(m(2), MachineState.CHANGEOVER)
    b.on_state(m(4), MachineState.IDLE)
    b.on_state(m(5), MachineState.RUNNING)
    assert a.spans(m(6)) == spans((0, 6)) and b.spans(m(6)) == spans((2, 4), (5, 6))
    assert momentary({"a": a, "b": b}, m(6)) == ("a", m(0))
    a.on_state(m(6), MachineState.PLANNED_STOP)
    assert momentary({"a": a, "b": b}, m(7)) == ("b", m(5))
    a.forget_before(m(10))
    assert a.periods == []
    assert momentary({}, m(7)) is None


def test_the_engine_forgets_periods_beyond_the_horizon_with_no_shift_to_close() -> None:
    """Closing a shift drops old active periods; a plant with no shift ending for days (here
    one Monday shift, then nothing) must still drop them, or a machine cycling through idle
    keeps every period it ever had."""
    config = plant(calendar={"shifts": [
        {"name": "monday", "start": "06:00", "end": "14:00", "days": ["mon"]}]})
    start = T0 + timedelta(hours=9)  # Monday 15:00: the next shift ends a week later
    engine = Engine(config, start)
    log = engine.activity["l1"]["m1"]
    now = start
    for i in range(60 * 6):  # 60 h: running 5 min, starved 5 min
        now = start + timedelta(minutes=10 * i)
        engine.on_sample(sample("m1", "state", 1, now))
        engine.on_sample(sample("m1", "state", 2, now + timedelta(minutes=5)))  # starved
        engine.on_tick(now + timedelta(minutes=5))
    assert log.periods, "the machine's periods are logged"
    oldest_end = log.periods[0][1]
    assert oldest_end is not None and oldest_end >= now - HORIZON - timedelta(hours=1)
    assert len(log.periods) <= (HORIZON + timedelta(hours=1)) / timedelta(minutes=10) + 1
