"""The machine tracker, table-driven with explicit times: no clock, no I/O."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    DowntimeStarted,
    MachineState,
    PartsProduced,
    Quality,
    StateChanged,
)
from rules.engine import Engine
from tests.unit.plant import T0, machine, plant, sample


def s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def run(engine: Engine, steps):
    events = []
    for step in steps:
        if step[0] == "tick":
            events += engine.on_tick(s(step[1]))
        else:
            mid, signal, value, at = step[:4]
            quality = step[4] if len(step) > 4 else Quality.GOOD
            events += engine.on_sample(sample(mid, signal, value, s(at), quality))
    return events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_a_fault_becomes_one_downtime_event_with_its_reason() -> None:
    engine = Engine(plant(), T0)
    events = run(engine, [
        ("m1", "state", 1, 0),
        ("m1", "fault_code", 17, 100),
        ("m1", "state", 4, 100),
        ("tick", 130),
        ("m1", "state", 1, 160),
        ("m1", "fault_code", 0, 160),
    ])
    started, ended = of(events, DowntimeStarted), of(events, DowntimeEnded)
    assert len(started) == len(ended) == 1
    stop = ended[0].event
    assert (stop.start, stop.end) == (s(100), s(160))
    assert stop.reason_code == "17" and stop.reason_text == "Jam"
    assert stop.category is DowntimeCategory.UNPLANNED and not stop.micro_stop
    assert stop.duration_s() == 60


def test_fault_code_arriving_after_the_state_still_names_the_stop() -> None:
    engine = Engine(plant(), T0)
    events = run(engine, [("m1", "state", 1, 0), ("m1", "state", 4, 50),
                          ("m1", "fault_code", 17, 50.2), ("m1", "state", 1, 90)])
    assert of(events, DowntimeEnded)[0].event.reason_text == "Jam"


def test_short_stop_is_a_micro_stop_and_a_performance_loss() -> None:
    engine = Engine(plant(), T0)
    events = run(engine, [("m1", "state", 1, 0), ("m1", "state", 4, 100),
                          ("m1", "state", 1, 110), ("tick", 200)])
    stop = of(events, DowntimeEnded)[0].event
    assert stop.micro_stop
    account = engine.trackers["m1"].account
    assert account is not None
    assert account.micro_stop_s == 10 and account.down_s == 0
    figures = account.figures()
    assert figures.run_time_s == 200  # micro-stops stay inside run time
    assert figures.losses_s["small_stops"] == 10


def test_changeover_and_planned_stop_get_their_categories() -> None:
    engine = Engine(plant(), T0)
    events = run(engine, [("m1", "state", 1, 0), ("m1", "state", 5, 10), ("m1", "state", 6, 70),
                          ("m1", "state", 1, 100)])
    categories = [e.event.category for e in of(events, DowntimeEnded)]
    assert categories == [DowntimeCategory.CHANGEOVER, DowntimeCategory.PLANNED]


def test_silent_machine_goes_offline_not_down_and_not_running() -> None:
    engine = Engine(plant(machines=[machine("m1", stale_after_s=30)]), T0)
    events = run(engine, [("m1", "state", 1, 0), ("tick", 20), ("tick", 29.9), ("tick", 31)])
    changes = of(events, StateChanged)
    assert [c.state for c in changes] == [MachineState.RUNNING, MachineState.OFFLINE]
    assert changes[-1].at == s(30)
    assert not of(events, DowntimeStarted)
    account = engine.trackers["m1"].account
    assert account is not None and account.offline_s == 1 and account.down_s == 0
    # fresh data brings back the last reported state
    events = run(engine, [("m1", "good_count", 5, 40)])
    assert of(events, StateChanged)[-1].state is MachineState.RUNNING


def test_bad_quality_state_is_offline() -> None:
    engine = Engine(plant(), T0)
    events = run(engine, [("m1", "state", 1, 0), ("m1", "state", 1, 5, Quality.BAD)])
    assert of(events, StateChanged)[-1].state is MachineState.OFFLINE
    assert of(events, StateChanged)[-1].reason_text == "bad quality"


def test_machine_without_state_tag_stops_when_parts_stop() -> None:
    engine = Engine(plant(machines=[machine("m1", state=False, no_count_stop_factor=5)]), T0)
    steps = [("m1", "good_count", n, 2.0 * n) for n in range(0, 11)]  # a part every 2 s to t=20
    steps += [("tick", 25), ("tick", 29.9), ("tick", 30.5)]
    events = run(engine, steps)
    changes = of(events, StateChanged)
    assert [c.state for c in changes] == [MachineState.RUNNING, MachineState.DOWN]
    assert changes[0].at == s(2)  # the first reading is only a baseline
    assert changes[1].at == s(22)  # back-dated to when the next part was due
    assert changes[1].reason_text == "no output"
    events = run(engine, [("m1", "good_count", 11, 40)])
    assert of(events, DowntimeEnded)[0].event.duration_s() == 18


def test_counter_reset_and_rollover_never_give_negative_or_phantom_parts() -> None:
    engine = Engine(plant(), T0)
    tracker = engine.trackers["m1"]
    tracker.counter.rollover_at = 65535
    events = run(engine, [
        ("m1", "good_count", 100, 0),  # baseline
        ("m1", "good_count", 103, 1),  # +3
        ("m1", "good_count", 2, 2),  # PLC restart: counter back to 0, then 2 parts
        ("m1", "good_count", 65534, 3),  # +65532 (a jump the counter really made)
        ("m1", "good_count", 1, 4),  # rollover at 65535: 65535 -> 0 -> 1 is +2 parts... (see below)
    ])
    parts = [e.good for e in of(events, PartsProduced)]
    assert parts == [3, 2, 65532, 3]  # 65534 -> 65535 -> 0 -> 1 is three increments
    assert all(p >= 0 for p in parts)


def test_reject_counts_feed_quality() -> None:
    engine = Engine(plant(), T0)
    run(engine, [("m1", "state", 1, 0), ("m1", "good_count", 0, 0), ("m1", "reject_count", 0, 0),
                 ("m1", "good_count", 90, 200), ("m1", "reject_count", 10, 200), ("tick", 200)])
    figures = engine.trackers["m1"].account.figures()
    assert figures.total_count == 100 and figures.good_count == 90
    assert figures.quality == 0.9
    assert figures.performance == 2.0 * 100 / 200


STATES = st.sampled_from([1, 2, 4, 5, 6])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 3000), st.sampled_from(["state", "tick", "bad"]),
                          STATES), min_size=1, max_size=60))
def test_state_intervals_never_overlap_and_add_up(steps) -> None:
    engine = Engine(plant(machines=[machine("m1", stale_after_s=600)]), T0)
    t = 0.0
    events = []
    for gap, kind, code in steps:
        t += gap
        if kind == "tick":
            events += engine.on_tick(s(t))
        else:
            quality = Quality.BAD if kind == "bad" else Quality.GOOD
            events += engine.on_sample(sample("m1", "state", code, s(t), quality))
    end = t + 1
    engine.on_tick(s(end))
    changes = of(events, StateChanged)
    times = [c.at for c in changes]
    assert times == sorted(times)  # no interval starts before the previous one
    for before, after in itertools.pairwise(changes):
        assert after.previous is before.state  # intervals chain without gaps
    tracker = engine.trackers["m1"]
    booked = 0.0
    for account in [*tracker.closed_accounts, tracker.account]:
        if account is None:
            continue
        booked += (account.running_s + account.idle_s + account.down_s + account.micro_stop_s
                   + account.changeover_s + account.planned_stop_s + account.offline_s)
        assert abs(account.elapsed_planned_s - (
            account.running_s + account.idle_s + account.down_s + account.micro_stop_s
            + account.changeover_s + account.planned_stop_s + account.offline_s)) < 1e-6
    calendar = engine.calendar
    planned = sum(sh.planned_between(T0, s(end)) for sh in calendar.shifts_between(T0, s(end)))
    if len(tracker.closed_accounts) < 6:
        assert abs(booked - planned) < 1e-6
