"""Stops and states added up where they are stored: what Pareto and MTBF/MTTR read.

A month of a plant's stops is ~70,000 DowntimeEvents, and the analyses need a few sums of
them: per reason (Pareto) or per machine and kind of stop (MTBF/MTTR). So the store adds
them up (SQLite: GROUP BY; InfluxDB, which cannot group by a field's value: a pivot of just
the fields the sums need, added up here) and hands back `ReasonTotal`s or `MachineTotal`s.

The terms are those of the stops `all_downtime_events` lists (query.DowntimeSearch):
- a stop started in [start, end); its duration is `end_us - start_us`, to now while it is
  open: what `DowntimeEvent.duration_s(now)` gives, in whole microseconds, so that sums
  are exact, the same in any order and from either store;
- the reason (code and text) is the person's coding when there is one, else the engine's;
  a stop without a category is unplanned.
`time_in_state` adds up state_timeline's intervals (query.state_spans) per state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from linemon.model import DowntimeCategory, DowntimeEvent, MachineState

from .query import StateRow, check_range, state_spans
from .schema import to_ns

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class ReasonTotal:
    """The stops of one reason in force (None: nobody coded them)."""

    reason_code: str | None
    reason_text: str | None  # its first stop's (by start, then id)
    count: int
    duration_us: int  # each stop's duration, at least 0, added up


@dataclass(frozen=True, slots=True)
class MachineTotal:
    """A machine's stops of one kind: category, micro-stop or not, ended or still open."""

    machine: str
    category: DowntimeCategory
    micro_stop: bool
    ended: bool
    count: int
    duration_us: int  # each stop's duration, at least 0, added up
    negative_us: int  # and apart, durations below 0 (a clock stepped back): normally 0


@dataclass(slots=True)
class ReasonSum(Generic[P]):
    """A reason's total while adding up; `first` carries what its first stop's text needs."""

    count: int
    duration_us: int
    first_ns: int
    first_id: str
    first: P


def duration_us(start_ns: int, end_ns: int | None, now_us: int) -> int:
    return (now_us if end_ns is None else end_ns // 1000) - start_ns // 1000


def add_up_reasons(stops: Iterable[tuple[str | None, int, str, int | None, P]],
                   now_ns: int) -> dict[str | None, ReasonSum[P]]:
    """Per reason, stops given as (reason_code, start_ns, id, end_ns, payload)."""
    out: dict[str | None, ReasonSum[P]] = {}
    now_us = now_ns // 1000
    for code, start_ns, id_, end_ns, payload in stops:
        d = duration_us(start_ns, end_ns, now_us)
        s = out.get(code)
        if s is None:
            out[code] = ReasonSum(1, max(0, d), start_ns, id_, payload)
            continue
        s.count += 1
        s.duration_us += max(0, d)
        if start_ns < s.first_ns or (start_ns == s.first_ns and id_ < s.first_id):
            s.first_ns, s.first_id, s.first = start_ns, id_, payload
    return out


def add_up_machines(stops: Iterable[tuple[str, DowntimeCategory, bool, int, int | None]],
                    now_ns: int) -> list[MachineTotal]:
    """Per machine and kind, stops given as (machine, category, micro_stop, start_ns,
    end_ns)."""
    sums: dict[tuple[str, DowntimeCategory, bool, bool], list[int]] = {}
    now_us = now_ns // 1000
    for machine, category, micro, start_ns, end_ns in stops:
        d = duration_us(start_ns, end_ns, now_us)
        s = sums.setdefault((machine, category, micro, end_ns is not None), [0, 0, 0])
        s[0] += 1
        s[1 if d > 0 else 2] += d
    return [MachineTotal(*key, *s) for key, s in sums.items()]


def by_reason(events: Iterable[DowntimeEvent], now: datetime) -> list[ReasonTotal]:
    """The stops added up per reason in Python: the reference for the stores' own."""
    sums = add_up_reasons(((ev.reason_code, to_ns(ev.start), ev.id, _end_ns(ev),
                            ev.reason_text) for ev in events), to_ns(now))
    return _reasons({code: (s.count, s.duration_us, s.first) for code, s in sums.items()})


def by_machine(events: Iterable[DowntimeEvent], now: datetime) -> list[MachineTotal]:
    """The stops added up per machine and kind in Python: the reference."""
    return _machines(add_up_machines(((ev.machine, ev.category, ev.micro_stop,
                                       to_ns(ev.start), _end_ns(ev)) for ev in events),
                                     to_ns(now)))


def _end_ns(ev: DowntimeEvent) -> int | None:
    return None if ev.end is None else to_ns(ev.end)


def _reasons(sums: dict[str | None, tuple[int, int, str | None]]) -> list[ReasonTotal]:
    return [ReasonTotal(code, text, n, us) for code, (n, us, text)
            in sorted(sums.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]


def _machines(totals: Iterable[MachineTotal]) -> list[MachineTotal]:
    return sorted(totals, key=lambda t: (t.machine, t.category, t.micro_stop, t.ended))


def state_seconds(prior: StateRow | None, changes: Sequence[StateRow], start: datetime,
                  end: datetime, now: datetime) -> dict[MachineState, float]:
    us: dict[str, int] = {}
    for row, a, b in state_spans(prior, changes, start, end, now):
        us[row.state] = us.get(row.state, 0) + b // 1000 - a // 1000
    return {MachineState(state): n / 1_000_000 for state, n in us.items()}


class TotalReads:
    """The HistoryQuery totals for a backend, over reads of its own (the `_` methods)."""

    _clock: Callable[[], datetime]

    async def _by_reason(self, start_ns: int, end_ns: int, now_ns: int, line: str | None,
                         machine: str | None, category: DowntimeCategory | None
                         ) -> dict[str | None, tuple[int, int, str | None]]:
        """Per reason: count, duration_us and the text of its first stop."""
        raise NotImplementedError

    async def _by_machine(self, start_ns: int, end_ns: int, now_ns: int,
                          machines: Sequence[str]) -> list[MachineTotal]:
        raise NotImplementedError

    async def _state_changes(self, machines: Sequence[str], start: datetime, end: datetime
                             ) -> dict[str, tuple[StateRow | None, list[StateRow]]]:
        """Per machine, its last `state` row before start and its rows in the range (no
        reason fields), as state_timeline reads them."""
        raise NotImplementedError

    async def downtime_by_reason(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, category: DowntimeCategory | str | None = None,
    ) -> list[ReasonTotal]:
        s, e = check_range(start, end)
        return _reasons(await self._by_reason(s, e, to_ns(self._clock()), line, machine,
                                              _category(category)))

    async def downtime_by_machine(
        self, *, start: datetime, end: datetime, machines: Collection[str],
    ) -> list[MachineTotal]:
        s, e = check_range(start, end)
        if not machines:
            return []
        return _machines(await self._by_machine(s, e, to_ns(self._clock()),
                                                sorted(set(machines))))

    async def time_in_state(
        self, machines: Collection[str], start: datetime, end: datetime,
    ) -> dict[str, dict[MachineState, float]]:
        check_range(start, end)
        now = self._clock()
        rows = await self._state_changes(sorted(set(machines)), start, end) if machines else {}
        return {m: state_seconds(*rows.get(m, (None, [])), start, end, now) for m in machines}


def _category(category: DowntimeCategory | str | None) -> DowntimeCategory | None:
    return None if category is None else DowntimeCategory(category)
