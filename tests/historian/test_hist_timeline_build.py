"""build_timeline (plain tuples, one datetime per boundary) gives state_spans' intervals.

state_spans is the definition both backends share (time_in_state adds it up); the timeline
is built without it for speed and must not differ: same states, bounds and reasons, for
changes at the same instant, before the start, after now and at the end.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.historian.query import StateInterval, StateRow, build_timeline, state_spans
from collector.historian.schema import from_ns, to_ns
from linemon.model import MachineState

T0 = 1_790_000_000_000_000_000  # ns; rows are whole microseconds, as linemon writes them
US = 1_000


def reference(prior: StateRow | None, changes: list[StateRow], start_ns: int, end_ns: int,
              now_ns: int) -> list[StateInterval]:
    return [StateInterval(MachineState(r.state), from_ns(a), from_ns(b), r.reason_code,
                          r.reason_text)
            for r, a, b in state_spans(prior, changes, from_ns(start_ns), from_ns(end_ns),
                                       from_ns(now_ns))]


def built(prior: StateRow | None, changes: list[StateRow], start_ns: int, end_ns: int,
          now_ns: int) -> list[StateInterval]:
    rows = sorted(changes, key=lambda r: r.ts_ns)  # what the stores read: in time order
    rows = ([prior] if prior is not None else []) + rows
    return build_timeline([(r.ts_ns, r.state, r.reason_code, r.reason_text) for r in rows],
                          from_ns(start_ns), from_ns(end_ns), from_ns(now_ns))


def test_a_shift_with_a_stop() -> None:
    m = 60_000_000 * US
    prior = StateRow(T0 - 5 * m, "idle")
    changes = [StateRow(T0 + 10 * m, "down", "17", "jam"), StateRow(T0 + 25 * m, "running"),
               StateRow(T0 + 25 * m, "idle"), StateRow(T0 + 70 * m, "running")]
    got = built(prior, changes, T0, T0 + 60 * m, T0 + 600 * m)
    assert [(iv.state, to_ns(iv.start) - T0, to_ns(iv.end) - T0, iv.reason_code)
            for iv in got] == [(MachineState.IDLE, 0, 10 * m, None),
                               (MachineState.DOWN, 10 * m, 25 * m, "17"),
                               (MachineState.IDLE, 25 * m, 60 * m, None)]
    assert got == reference(prior, changes, T0, T0 + 60 * m, T0 + 600 * m)
    assert got[0].end is got[1].start  # one datetime per boundary


STATES = st.sampled_from([s.value for s in MachineState])
REASONS = st.one_of(st.none(), st.sampled_from(["17", "C1", ""]))
OFFSETS = st.integers(-50, 400).map(lambda k: T0 + k * 7 * US)


@settings(max_examples=300, deadline=None)
@given(prior=st.one_of(st.none(), st.builds(StateRow, st.integers(-900, -1).map(
           lambda k: T0 + k * US), STATES, REASONS, REASONS)),
       changes=st.lists(st.builds(StateRow, OFFSETS, STATES, REASONS, REASONS), max_size=30),
       start_off=st.integers(0, 300), length=st.integers(1, 3000), now_off=st.integers(-100, 4000))
def test_the_same_intervals_as_state_spans(prior: StateRow | None, changes: list[StateRow],
                                           start_off: int, length: int, now_off: int) -> None:
    start, now = T0 + start_off * US, T0 + now_off * US
    end = start + length * US
    changes = [c for c in changes if start <= c.ts_ns < end]  # what a store reads
    assert built(prior, changes, start, end, now) == reference(prior, changes, start, end, now)
