"""The historical OEE replay books a machine's timeline into its shifts as each shift on its
own did before: walked from the first interval ending after the shift's start, with the stop
of each DOWN interval looked up there. Same accounts, field for field, on generated
timelines and on the cases that matter on the shop floor.

The plant (tests/unit/plant.py): early 06:00-14:00 with a break 09:00-09:30, late
14:00-22:00, night 22:00-06:00 (across midnight); here also a maintenance window over the
late shift of the first day, overlapping nothing else.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.oee_history import _NO_STOPS, _replay, _Stops, _stops_by_machine, _together
from collector.historian import StateInterval
from linemon.config import MachineConfig
from linemon.model import DowntimeEvent, MachineState
from rules.calendar import ShiftCalendar, ShiftInstance
from rules.oee import ShiftAccount
from tests.unit.plant import T0, machine, plant

MAINTENANCE = {"start": "2026-03-02T16:00:00Z", "end": "2026-03-02T17:30:00Z",
               "reason": "press rebuild"}
CONFIG = plant(calendar={"shifts": plant().calendar.model_dump()["shifts"],
                         "maintenance": [MAINTENANCE]})
CALENDAR = ShiftCalendar(CONFIG.calendar, "UTC")
M1 = MachineConfig.model_validate({**machine("m1"), "micro_stop_threshold_s": 60})
US = timedelta(microseconds=1)


def replay_each_shift(machine: MachineConfig, timeline: Sequence[StateInterval],
                      stops: Sequence[DowntimeEvent], parts: Sequence[tuple[int, int]],
                      shifts: Sequence[ShiftInstance],
                      bounds: Sequence[tuple[datetime, datetime]],
                      until: datetime) -> list[ShiftAccount]:
    """The replay as it was: each shift from the first interval that ends after its start,
    the machine's stops picked from all of them, each DOWN interval's stop looked up in
    every shift it is booked in."""
    own = _Stops(sorted((e for e in stops if e.machine == machine.id), key=lambda e: e.start))
    counted: set[str] = set()
    ends = [iv.end for iv in timeline]
    out = []
    for shift, (lo, hi), (good, reject) in zip(shifts, bounds, parts, strict=True):
        account = ShiftAccount(shift, machine.ideal_cycle_time_s)
        for iv in timeline[bisect.bisect_right(ends, lo):]:
            if iv.start >= hi:
                break
            a, b = max(iv.start, lo), min(iv.end, hi)
            if b <= a:
                continue
            booked = account.book(a, b, iv.state)
            if iv.state is not MachineState.DOWN:
                continue
            stop = own.at(iv.start)
            if stop is None:
                continue
            ended = stop.end is not None and stop.end <= until
            if ended:
                micro = stop.micro_stop
            else:
                micro = (until - stop.start).total_seconds() < machine.micro_stop_threshold_s
            if micro:
                account.reclassify_micro(booked)
            if stop.id in counted or (micro and not ended):
                continue
            counted.add(stop.id)
            if micro:
                account.micro_stops += 1
            else:
                account.failures += 1
        account.good, account.reject = good, reject
        out.append(account)
    return out


def both(timeline: Sequence[StateInterval], stops: Sequence[DowntimeEvent], start: datetime,
         until: datetime) -> tuple[list[ShiftAccount], list[ShiftAccount]]:
    shifts = CALENDAR.shifts_between(start, until)
    bounds = [(max(start, s.start), min(until, s.end)) for s in shifts]
    parts = [(10 * i, i % 3) for i in range(len(shifts))]
    before = replay_each_shift(M1, timeline, stops, parts, shifts, bounds, until)
    now = _replay(M1, timeline, _stops_by_machine(stops).get(M1.id, _NO_STOPS), parts, shifts,
                  bounds, until)
    return before, now


def fields_of(accounts: Sequence[ShiftAccount]) -> list[tuple[object, ...]]:
    return [astuple(a) for a in accounts]  # every field, the open stop's seconds included


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iv(state: MachineState, a: float, b: float) -> StateInterval:
    return StateInterval(state, at(a), at(b))


def stop(id_: str, a: float, b: float | None, micro: bool = False,
         machine_id: str = "m1") -> DowntimeEvent:
    return DowntimeEvent(id=id_, line="l1", machine=machine_id, start=at(a),
                         end=None if b is None else at(b), micro_stop=micro)


RUN, DOWN, IDLE = MachineState.RUNNING, MachineState.DOWN, MachineState.IDLE


@pytest.mark.parametrize(("timeline", "stops", "start", "until"), [
    pytest.param(  # 13:30-14:45: a failure in the early shift, its time in both
        [iv(RUN, 0, 7.5), iv(DOWN, 7.5, 8.75), iv(RUN, 8.75, 10)],
        [stop("s1", 7.5, 8.75)], 0, 10, id="stop-spanning-two-shifts"),
    pytest.param(  # 21:00-06:00 down: late and night (across midnight) share one stop
        [iv(RUN, 8, 15), iv(DOWN, 15, 24), iv(RUN, 24, 26)],
        [stop("s1", 15, 24)], 8, 26, id="night-shift-across-midnight"),
    pytest.param(  # the window starts and ends inside intervals, and inside shifts
        [iv(RUN, 1.2, 3.25), iv(DOWN, 3.25, 3.4), iv(RUN, 3.4, 20.1)],
        [stop("s1", 3.25, 3.4)], 1.2, 20.1, id="intervals-cut-by-the-window"),
    pytest.param(  # the stop began before the window (the lookback finds it)
        [iv(DOWN, 2, 2.5), iv(RUN, 2.5, 4)], [stop("s1", 1.5, 2.5)], 2, 4,
        id="stop-began-before-the-window"),
    pytest.param(  # open at `until`: 30 s is still a micro-stop (not counted), 2 h a failure
        [iv(RUN, 0, 7.99), iv(DOWN, 7.99, 8 + 30 / 3600)],
        [stop("s1", 7.99, None)], 0, 8 + 30 / 3600, id="open-stop-at-until"),
    pytest.param(
        [iv(RUN, 0, 6), iv(DOWN, 6, 8)], [stop("s1", 6, None)], 0, 8,
        id="open-failure-at-until"),
    pytest.param(  # open for exactly the threshold (60 s): no longer a micro-stop
        [iv(RUN, 0, 7), iv(DOWN, 7, 7 + 60 / 3600)], [stop("s1", 7, None)], 0, 7 + 60 / 3600,
        id="open-stop-of-exactly-the-threshold"),
    pytest.param(  # down through the break and the maintenance window: planned down time
        [iv(DOWN, 2.9, 3.6), iv(RUN, 3.6, 10), iv(DOWN, 10, 11.2), iv(RUN, 11.2, 12)],
        [stop("s1", 2.9, 3.6, micro=False), stop("s2", 10, 11.2)], 0, 12,
        id="stops-over-break-and-maintenance"),
    pytest.param(  # a micro-stop made of two DOWN intervals, and another machine's stop
        [iv(RUN, 0, 1), iv(DOWN, 1, 1 + 10 / 3600), iv(DOWN, 1 + 10 / 3600, 1 + 20 / 3600),
         iv(IDLE, 1 + 20 / 3600, 2)],
        [stop("s1", 1, 1 + 20 / 3600, micro=True), stop("x", 1, 2, machine_id="m2")], 0, 2,
        id="micro-stop-in-two-intervals"),
])
def test_each_shift_books_what_it_booked_before(timeline, stops, start, until) -> None:
    before, now = both(timeline, stops, at(start), at(until))
    assert fields_of(now) == fields_of(before)


def test_a_stop_across_shifts_is_one_failure_in_the_shift_it_began_in() -> None:
    _, (early, late) = both([iv(RUN, 0, 7.5), iv(DOWN, 7.5, 8.75), iv(RUN, 8.75, 10)],
                            [stop("s1", 7.5, 8.75)], at(0), at(10))
    assert (early.failures, late.failures) == (1, 0)
    assert (early.down_s, late.down_s) == (1800.0, 2700.0)


STATES = st.sampled_from(list(MachineState))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[StateInterval], list[DowntimeEvent], datetime,
                                        datetime]:
    """A window of up to three days from around the first day, a timeline over it (gaps
    allowed), and stops: most DOWN intervals belong to one, some stops span several
    intervals or are still open, a few belong to another machine or start together."""
    start = T0 + draw(st.integers(-30 * 3600, 30 * 3600)) * timedelta(seconds=1) \
        + draw(st.integers(0, 999_999)) * US
    t = start
    timeline: list[StateInterval] = []
    stops: list[DowntimeEvent] = []
    current: DowntimeEvent | None = None
    for _ in range(draw(st.integers(0, 40))):
        t += draw(st.sampled_from([0, 0, 0, 1, 1800])) * timedelta(seconds=1)  # gaps
        length = draw(st.one_of(st.integers(1, 120), st.integers(60, 12 * 3600)))
        end = t + length * timedelta(seconds=1) + draw(st.integers(0, 999_999)) * US
        state = draw(STATES)
        timeline.append(StateInterval(state, t, end))
        if state is MachineState.DOWN and draw(st.booleans()):
            keep = current is not None and draw(st.integers(0, 3)) == 0  # one stop, two DOWNs
            if not keep:
                began = t - draw(st.sampled_from([0, 0, 5, 3600])) * timedelta(seconds=1)
                ends = draw(st.sampled_from(["at", "after", "open", "before"]))
                stop_end = {"at": end, "after": end + timedelta(hours=2), "open": None,
                            "before": began + (end - t) / 2 + US}[ends]
                current = DowntimeEvent(
                    id=f"s{len(stops)}", line="l1", machine=draw(st.sampled_from(["m1"] * 5
                                                                                + ["m2"])),
                    start=began, end=stop_end, micro_stop=draw(st.booleans()))
                stops.append(current)
                if draw(st.integers(0, 9)) == 0:  # another stop starting with it
                    stops.append(DowntimeEvent(id=f"s{len(stops)}", line="l1", machine="m1",
                                               start=began, end=end, micro_stop=True))
        t = end
    until = max(start + US, t - draw(st.integers(0, 3600)) * timedelta(seconds=1))
    return timeline, stops, start, until


@settings(max_examples=300, deadline=None)
@given(histories())
def test_generated_timelines_book_as_before(history) -> None:
    timeline, stops, start, until = history
    before, now = both(timeline, stops, start, until)
    assert fields_of(now) == fields_of(before)


async def test_a_failed_read_is_raised_as_it_is_and_the_others_are_cancelled() -> None:
    slow_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise

    async def failing() -> None:
        raise ValueError("every_s: too many buckets")

    with pytest.raises(ValueError, match="too many buckets"):
        await _together(slow(), failing())
    await asyncio.wait_for(slow_cancelled.wait(), 5)


async def test_reads_answer_in_order() -> None:
    async def answer(value: int, after_s: float) -> int:
        await asyncio.sleep(after_s)
        return value

    assert await _together(answer(1, 0.02), answer(2, 0), answer(3, 0.01)) == [1, 2, 3]


def test_the_calendar_of_these_tests_has_what_they_exercise() -> None:
    shifts = CALENDAR.shifts_between(at(0), at(24))
    assert [s.name for s in shifts] == ["early", "late", "night"]
    assert shifts[0].breaks and shifts[1].maintenance
    assert shifts[2].end.date() > shifts[2].start.date()
    assert at(0).tzinfo is UTC
