"""Downtime totals and time in state are added up in the store (SQL GROUP BY / a Flux pivot
of the fields they need), not from every DowntimeEvent in Python.

Both backends must give what adding up the stops themselves gives (`by_reason` and
`by_machine` over all_downtime_events) on a window that cuts stops at both edges, with a
stop a person coded later, an open one, an uncoded one, a micro-stop, a changeover and
two machines stopping at the same instant.
"""

from __future__ import annotations

from datetime import timedelta

from historian_helpers import BASE, NOW

from api.analysis import pareto, reliability
from collector.historian import Historian
from collector.historian.totals import by_machine, by_reason
from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    DowntimeEvent,
    DowntimeStarted,
    MachineState,
    StateChanged,
)

START, END = BASE + timedelta(minutes=10), BASE + timedelta(minutes=100)
WELD = "weld 1,=\\x"


def at(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def stops() -> list[DowntimeEvent]:
    u = DowntimeCategory.UNPLANNED
    return [
        # begins before the window: not the window's, though it ends inside it
        DowntimeEvent("p1-before", "line-a", "press-1", BASE + at(5), BASE + at(15), "17", "jam"),
        DowntimeEvent("p1-jam", "line-a", "press-1", BASE + at(20), BASE + at(30), "17", "jam"),
        DowntimeEvent("p1-micro", "line-a", "press-1", BASE + at(40), BASE + at(40.25),
                      micro_stop=True),
        # the engine said 17; a person codes it 42 afterwards (test below)
        DowntimeEvent("p2-later", "line-a", "press-2", BASE + at(30), BASE + at(45), "17", "jam"),
        DowntimeEvent("w-change", "line b", WELD, BASE + at(50), BASE + at(80), "C1", "die",
                      category=DowntimeCategory.CHANGEOVER),
        # two machines stop at the same instant, same code, other words: the id decides
        DowntimeEvent("p1-tie", "line-a", "press-1", BASE + at(60), BASE + at(61.5), "23",
                      "tool"),
        DowntimeEvent("a-tie", "line b", WELD, BASE + at(60), BASE + at(62), "23", "tool break"),
        # still open at NOW (BASE + 2 h): 30 minutes so far; coded while open (test below)
        DowntimeEvent("p2-open", "line-a", "press-2", BASE + at(90), category=u),
        # begins inside and ends after the window: counted whole
        DowntimeEvent("w-late", "line b", WELD, BASE + at(95), BASE + at(110), "17", "jam"),
        DowntimeEvent("w-after", "line b", WELD, BASE + at(100), BASE + at(101), "17", "jam"),
    ]


def states() -> list[StateChanged]:
    def change(machine: str, minutes: float, state: MachineState) -> StateChanged:
        return StateChanged("line-a", machine, BASE + at(minutes), state, MachineState.RUNNING)

    return [change("press-1", -30, MachineState.RUNNING),  # in effect at the window start
            change("press-1", 20, MachineState.DOWN), change("press-1", 30, MachineState.IDLE),
            change("press-1", 50, MachineState.RUNNING), change("press-1", 60, MachineState.DOWN),
            change("press-1", 61.5, MachineState.RUNNING),
            change("press-1", 110, MachineState.DOWN),  # after the window
            change("press-2", 30, MachineState.DOWN), change("press-2", 45, MachineState.RUNNING),
            change("press-2", 90, MachineState.DOWN)]  # down until now


async def seed(h: Historian) -> None:
    events: list[object] = list(states())
    for ev in stops():
        events.append(DowntimeStarted(DowntimeEvent(ev.id, ev.line, ev.machine, ev.start,
                                                    category=ev.category)))
        if ev.end is not None:
            events.append(DowntimeEnded(ev))
    await h.write_events(events)
    assert await h.flush(20), h.health()
    await h.query.code_downtime("p2-later", "42", "overheat", by="ana", at=NOW)
    await h.query.code_downtime("p2-open", "31", "no material", by="ana", at=NOW)


async def test_totals_are_the_stops_added_up(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    for search in ({}, {"machine": "press-1"}, {"machine": WELD}, {"line": "line b"},
                   {"category": "changeover"}, {"category": "unplanned", "line": "line-a"}):
        events = await q.all_downtime_events(start=START, end=END, **search)
        got = await q.downtime_by_reason(start=START, end=END, **search)
        assert got == by_reason(events, NOW), search
    for machines in (["press-1"], ["press-2", WELD], ["press-1", "press-2", WELD, "press-9"]):
        events = [ev for ev in await q.all_downtime_events(start=START, end=END)
                  if ev.machine in machines]
        got = await q.downtime_by_machine(start=START, end=END, machines=machines)
        assert got == by_machine(events, NOW), machines
    assert await q.downtime_by_machine(start=START, end=END, machines=[]) == []
    assert await q.downtime_by_reason(start=START, end=END, machine="press-9") == []


async def test_what_the_totals_say(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    reasons = await q.downtime_by_reason(start=START, end=END)
    assert [(t.reason_code, t.reason_text, t.count, t.duration_us / 60e6) for t in reasons] == [
        ("17", "jam", 2, 25.0),  # p1-jam and w-late: whole, though it ends after the window
        ("23", "tool break", 2, 3.5),  # the first of the tie by id: a-tie's words
        ("31", "no material", 1, 30.0),  # open: to now, coded by a person while open
        ("42", "overheat", 1, 15.0),  # the person's coding, not the engine's 17
        ("C1", "die", 1, 30.0),
        (None, None, 1, 0.25),
    ]
    assert [(r.reason_code, r.count, r.minutes) for r in pareto(reasons)] == [
        ("31", 1, 30.0), ("C1", 1, 30.0), ("17", 2, 25.0), ("42", 1, 15.0), ("23", 2, 3.5),
        (None, 1, 0.25)]
    press2 = await q.downtime_by_machine(start=START, end=END, machines=["press-2"])
    u = DowntimeCategory.UNPLANNED
    assert [(t.category, t.micro_stop, t.ended, t.count, t.duration_us) for t in press2] == [
        (u, False, False, 1, 30 * 60_000_000), (u, False, True, 1, 15 * 60_000_000)]


async def test_time_in_state_is_the_timeline_added_up(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    for start, end in ((START, END), (BASE, NOW + at(60)), (BASE + at(25), BASE + at(26))):
        got = await q.time_in_state(["press-1", "press-2", "press-9"], start, end)
        for machine in ("press-1", "press-2", "press-9"):
            want: dict[MachineState, float] = {}
            for iv in await q.state_timeline(machine, start, end):
                want[iv.state] = want.get(iv.state, 0.0) + (iv.end - iv.start).total_seconds()
            assert got[machine] == want, (machine, start, end)
    window = await q.time_in_state(["press-1", "press-2"], START, END)
    assert window["press-1"] == {MachineState.RUNNING: 3510.0, MachineState.DOWN: 690.0,
                                 MachineState.IDLE: 1200.0}
    assert window["press-2"] == {MachineState.DOWN: 25 * 60.0, MachineState.RUNNING: 45 * 60.0}


async def test_reliability_from_the_totals(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    totals = await q.downtime_by_machine(start=START, end=END, machines=["press-1"])
    in_state = await q.time_in_state(["press-1"], START, END)
    got = reliability("line-a", "press-1", in_state["press-1"], totals)
    # failures: the jam (10 min) and the tie (1.5 min); the 15 s micro-stop is run time,
    # with 58.5 min running and 20 min idle
    assert (got.failures, got.failure_downtime_s, got.operating_time_s) == (2, 690.0, 4725.0)
    assert (got.mtbf_s, got.mttr_s) == (2362.5, 345.0)
