"""The one history query interface the API uses, and the logic both backends share.

Both backends push down what the store does well (machine, line, time range, windowed
aggregates, and for the downtime list its filters, order and page cut: `DowntimeSearch`)
and hand the rows to the functions here for the rest (cursors, timelines, bucket filling),
so the API gets the same answer from either. `select_downtime` is the downtime list done
in Python over every stop: the reference the stores' searches are tested against.

Semantics:
- time ranges are half-open [start, end); datetimes are UTC;
- `downtime_events` returns stops that *started* in the range; an open stop's duration
  is measured to `now`;
- windows (`counts`, `signal_series`) are aligned to the Unix epoch; a bucket is labelled
  with its aligned start, even when `start` cuts it;
- `counts` returns every bucket (zeros included); `signal_series` only non-empty windows,
  over numeric values of quality good or uncertain;
- `state_timeline` starts with the state in effect at `start` (the last change before it)
  and ends at min(end, now);
- `downtime_by_reason`, `downtime_by_machine` and `time_in_state` are the stops and the
  timeline added up in the store, with those same semantics (totals.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from linemon.model import DowntimeCategory, DowntimeEvent, MachineState, PartsProduced

from .schema import OeeSnapshot, encode_audit, encode_coding, from_ns, to_ns
from .spool import Record

if TYPE_CHECKING:
    from .totals import MachineTotal, ReasonTotal

Order = Literal["start_desc", "start_asc", "duration_desc"]
Agg = Literal["mean", "min", "max", "last"]
ORDERS: tuple[str, ...] = ("start_desc", "start_asc", "duration_desc")
AGGS: tuple[str, ...] = ("mean", "min", "max", "last")
MAX_BUCKETS = 100_000
MAX_LIMIT = 10_000


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # opaque; None when this is the last page


@dataclass(frozen=True, slots=True)
class AuditEntry:
    downtime_id: str
    by: str
    at: datetime
    before: DowntimeEvent
    after: DowntimeEvent


@dataclass(frozen=True, slots=True)
class StateInterval:
    state: MachineState
    start: datetime
    end: datetime
    reason_code: str | None = None
    reason_text: str | None = None


@dataclass(frozen=True, slots=True)
class CountBucket:
    start: datetime
    good: int
    reject: int


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class StateRow:
    """One `state` point as a backend read it."""

    ts_ns: int
    state: str
    reason_code: str | None = None
    reason_text: str | None = None


class HistoryQuery(Protocol):
    async def downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, reason_code: str | None = None,
        category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
        uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
        order: Order = "start_desc",
    ) -> Page[DowntimeEvent]: ...

    async def all_downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, category: DowntimeCategory | str | None = None,
    ) -> list[DowntimeEvent]:
        """Every stop that started in the range, oldest first, in one read (analyses)."""
        ...

    async def get_downtime(self, id: str) -> DowntimeEvent | None: ...

    async def code_downtime(
        self, id: str, reason_code: str, reason_text: str | None = None,
        note: str | None = None, *, by: str, at: datetime,
    ) -> tuple[DowntimeEvent, DowntimeEvent]: ...

    async def downtime_audit(self, id: str) -> list[AuditEntry]: ...

    async def state_timeline(
        self, machine: str, start: datetime, end: datetime) -> list[StateInterval]: ...

    async def downtime_by_reason(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, category: DowntimeCategory | str | None = None,
    ) -> list[ReasonTotal]:
        """The stops all_downtime_events lists, added up per reason in the store (Pareto)."""
        ...

    async def downtime_by_machine(
        self, *, start: datetime, end: datetime, machines: Collection[str],
    ) -> list[MachineTotal]:
        """The stops of these machines (on any line) all_downtime_events lists, added up per
        machine, category, micro-stop or not, ended or not, in the store (MTBF/MTTR)."""
        ...

    async def time_in_state(
        self, machines: Collection[str], start: datetime, end: datetime,
    ) -> dict[str, dict[MachineState, float]]:
        """Per machine, the seconds in each state: state_timeline's intervals added up
        (every machine asked for has an entry; empty without history)."""
        ...

    async def counts(
        self, machine: str, start: datetime, end: datetime, every_s: int) -> list[CountBucket]: ...

    async def signal_series(
        self, machine: str, signal: str, start: datetime, end: datetime, every_s: int,
        agg: Agg = "mean",
    ) -> list[SeriesPoint]: ...

    async def oee_snapshots(
        self, *, start: datetime, end: datetime, machine: str | None = None,
        line: str | None = None,
    ) -> list[OeeSnapshot]: ...

    async def parts_produced(
        self, machine: str, start: datetime, end: datetime) -> list[PartsProduced]:
        """The parts points in [start, end), oldest first, with the ideal cycle time in force
        for them when the engine recorded one (None otherwise)."""
        ...


class DowntimeNotFound(LookupError):
    """No downtime event with that id (the API answers 404)."""


class HistoryUnavailable(Exception):
    """The store cannot answer right now (the API answers 503)."""


class EditSink(Protocol):
    """Writes records through the spool and waits until the store has them."""

    async def __call__(self, records: list[Record]) -> None: ...


# --- checks shared by both backends -------------------------------------------------


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    s, e = to_ns(start), to_ns(end)
    if e <= s:
        raise ValueError("end must be after start")
    return s, e


def check_every(start: datetime, end: datetime, every_s: int) -> int:
    if every_s <= 0 or int(every_s) != every_s:
        raise ValueError("every_s must be a positive whole number of seconds")
    s, e = check_range(start, end)
    if (e - s) // (every_s * 1_000_000_000) > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} buckets: use a larger every_s")
    return int(every_s) * 1_000_000_000


def check_agg(agg: str) -> None:
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {', '.join(AGGS)}")


def align(ts_ns: int, every_ns: int) -> int:
    return ts_ns - ts_ns % every_ns


# --- downtime: filter, order, paginate -------------------------------------------------


def _sort_key(ev: DowntimeEvent, order: str, now: datetime) -> list[float | int | str]:
    start = to_ns(ev.start)
    if order == "duration_desc":
        return [ev.duration_s(now), start, ev.id]
    return [start, ev.id]


def encode_cursor(order: str, key: Sequence[float | int | str]) -> str:
    raw = json.dumps({"o": order, "k": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _key_fits(key: object, order: str) -> bool:
    """A forged cursor must fail here (ValueError), not later in a comparison."""
    kinds: tuple[tuple[type, ...], ...] = (
        ((int, float), (int,), (str,)) if order == "duration_desc" else ((int,), (str,)))
    return (isinstance(key, list) and len(key) == len(kinds)
            and all(isinstance(v, k) and not isinstance(v, bool)
                    and (not isinstance(v, float) or math.isfinite(v))
                    for v, k in zip(key, kinds, strict=True)))


def decode_cursor(cursor: str, order: str) -> list[float | int | str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key = data["k"] if isinstance(data, dict) else None
        ok = isinstance(data, dict) and data.get("o") == order and _key_fits(key, order)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        ok = False
    if not ok:
        raise ValueError("invalid cursor (it belongs to another query or was altered)")
    return key


@dataclass(frozen=True, slots=True)
class DowntimeSearch:
    """One page of the downtime list, checked, in the terms a store pushes down.

    A store returns up to `limit + 1` stops that started in [start_ns, end_ns), pass the
    filters and come after `after` in `order`, sorted by that order's key (`sort_key`):
    (start, id), or (duration to `now`, start, id) for duration_desc; ties in start or
    duration are broken by the next key, so pages never overlap nor skip a stop.

    The key's terms, the same in SQL, Flux and Python:
    - start: the point's timestamp in ns; linemon writes whole microseconds (its times are
      datetimes), so it is exactly the DowntimeEvent's start;
    - duration: `(end_us - start_us) / 1e6`, end = now for an open stop: what
      `DowntimeEvent.duration_s(now)` computes (an exactly rounded division both ways;
      InfluxDB sorts closed stops by their stored `duration_s`, written from that value);
    - the reason is the person's coding when there is one, else the engine's; a stop
      without a category is unplanned.
    A store may also return a superset in any order and let `pick` order and cut it.
    """

    start_ns: int
    end_ns: int
    now_ns: int
    order: str
    limit: int
    line: str | None = None
    machine: str | None = None
    reason_code: str | None = None
    category: str | None = None
    min_duration_s: float | None = None
    uncoded_only: bool = False
    after: list[float | int | str] | None = None  # the cursor's key

    @property
    def descending(self) -> bool:
        return self.order != "start_asc"

    @property
    def filters_fields(self) -> bool:
        """Whether a filter needs more of a stop than its start, machine, line and id."""
        return (self.reason_code is not None or self.category is not None
                or self.min_duration_s is not None or self.uncoded_only)

    def matches(self, ev: DowntimeEvent, now: datetime) -> bool:
        return (self.start_ns <= to_ns(ev.start) < self.end_ns
                and (self.line is None or ev.line == self.line)
                and (self.machine is None or ev.machine == self.machine)
                and (self.reason_code is None or ev.reason_code == self.reason_code)
                and (self.category is None or ev.category == self.category)
                and (not self.uncoded_only or ev.reason_code is None)
                and (self.min_duration_s is None or ev.duration_s(now) >= self.min_duration_s))

    def pick(self, events: Iterable[DowntimeEvent]) -> list[DowntimeEvent]:
        """The search done in Python: what a store returns, from any superset of it."""
        now = from_ns(self.now_ns)
        keyed = sorted(((_sort_key(ev, self.order, now), ev) for ev in events
                        if self.matches(ev, now)),
                       key=lambda kv: kv[0], reverse=self.descending)
        after = self.after
        if after is not None:
            keyed = [kv for kv in keyed if (kv[0] < after if self.descending else kv[0] > after)]
        return [ev for _, ev in keyed[: self.limit + 1]]

    def page(self, events: Sequence[DowntimeEvent]) -> Page[DowntimeEvent]:
        """The page from what the store returned (up to limit + 1 stops, in order)."""
        items = list(events[: self.limit])
        more = len(events) > self.limit
        now = from_ns(self.now_ns)
        return Page(items, encode_cursor(self.order, _sort_key(items[-1], self.order, now))
                    if more else None)


def downtime_search(
    *, start: datetime, end: datetime, now: datetime, line: str | None = None,
    machine: str | None = None, reason_code: str | None = None,
    category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
    uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
    order: str = "start_desc",
) -> DowntimeSearch:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    s, e = check_range(start, end)
    after = decode_cursor(cursor, order) if cursor is not None else None
    return DowntimeSearch(
        start_ns=s, end_ns=e, now_ns=to_ns(now), order=order, limit=limit, line=line,
        machine=machine, reason_code=reason_code,
        category=None if category is None else str(category),
        min_duration_s=None if min_duration_s is None else float(min_duration_s),
        uncoded_only=uncoded_only, after=after)


def select_downtime(
    events: Iterable[DowntimeEvent], *, now: datetime, reason_code: str | None = None,
    category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
    uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
    order: str = "start_desc",
) -> Page[DowntimeEvent]:
    """The downtime page computed in Python from every stop given (all in range): the
    reference the stores' pushed-down searches are tested against."""
    search = downtime_search(
        start=from_ns(0), end=from_ns(2**62), now=now, reason_code=reason_code,
        category=category, min_duration_s=min_duration_s, uncoded_only=uncoded_only,
        limit=limit, cursor=cursor, order=order)
    return search.page(search.pick(events))


class DowntimeReads:
    """`downtime_events` and `all_downtime_events` for a backend: the search is pushed down
    to the store (`_downtime_page`: filters, order, limit), only a page comes back."""

    _clock: Callable[[], datetime]

    async def _downtime_page(self, search: DowntimeSearch) -> list[DowntimeEvent]:
        raise NotImplementedError

    async def _all_downtime(self, start: datetime, end: datetime, line: str | None,
                            machine: str | None, category: str | None) -> list[DowntimeEvent]:
        raise NotImplementedError

    async def downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, reason_code: str | None = None,
        category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
        uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
        order: str = "start_desc",
    ) -> Page[DowntimeEvent]:
        search = downtime_search(
            start=start, end=end, now=self._clock(), line=line, machine=machine,
            reason_code=reason_code, category=category, min_duration_s=min_duration_s,
            uncoded_only=uncoded_only, limit=limit, cursor=cursor, order=order)
        return search.page(await self._downtime_page(search))

    async def all_downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, category: DowntimeCategory | str | None = None,
    ) -> list[DowntimeEvent]:
        check_range(start, end)
        return await self._all_downtime(start, end, line, machine,
                                        None if category is None else str(category))


# --- states and counts -----------------------------------------------------------------


def state_spans(prior: StateRow | None, changes: Sequence[StateRow], start: datetime,
                end: datetime, now: datetime) -> Iterator[tuple[StateRow, int, int]]:
    """Each state row with the span [a, b) in ns it holds inside [start, min(end, now)), in
    time order; rows that hold nothing there (overtaken at the same instant) are left out."""
    s_ns, e_ns = to_ns(start), min(to_ns(end), max(to_ns(now), to_ns(start)))
    rows = ([prior] if prior is not None else []) + sorted(changes, key=lambda r: r.ts_ns)
    for i, row in enumerate(rows):
        a = max(row.ts_ns, s_ns)
        b = rows[i + 1].ts_ns if i + 1 < len(rows) else e_ns
        b = min(b, e_ns)
        if b > a:
            yield row, a, b


_STATES = {s.value: s for s in MachineState}
StateTuple = tuple[int, str, str | None, str | None]  # a StateRow's fields, in order


def build_timeline(rows: Sequence[StateTuple], start: datetime, end: datetime, now: datetime
                   ) -> list[StateInterval]:
    """The intervals of state_spans, from the rows as plain tuples: the state in effect at
    start, if any, then the changes in time order. A month of a machine is some 3,000
    intervals, so each boundary becomes a datetime once (it ends one interval and starts
    the next) and a state is looked up in a dict, not made by MachineState()."""
    s_ns, e_ns = to_ns(start), min(to_ns(end), max(to_ns(now), to_ns(start)))
    out = []
    last_ns: int | None = None  # the last boundary made, and its datetime `last`
    last = from_ns(0)
    n = len(rows)
    for i, (ts, state, code, text) in enumerate(rows):
        a = max(ts, s_ns)
        b = min(rows[i + 1][0] if i + 1 < n else e_ns, e_ns)
        if b <= a:
            continue
        a_dt = last if a == last_ns else from_ns(a)
        last_ns, last = b, from_ns(b)
        out.append(StateInterval(_STATES.get(state) or MachineState(state), a_dt, last, code,
                                 text))
    return out


def fill_counts(sums: dict[int, tuple[int, int]], start: datetime, end: datetime,
                every_ns: int) -> list[CountBucket]:
    """Every epoch-aligned bucket from start to end, with zeros where nothing was counted."""
    s_ns, e_ns = check_range(start, end)
    out = []
    b = align(s_ns, every_ns)
    while b < e_ns:
        good, reject = sums.get(b, (0, 0))
        out.append(CountBucket(from_ns(b), int(good), int(reject)))
        b += every_ns
    return out


def coded(before: DowntimeEvent, reason_code: str, reason_text: str | None,
          note: str | None, by: str) -> DowntimeEvent:
    """The event after a person's coding; no text or note (None or "") keeps what was there.

    A note cannot be cleared, only replaced: an empty string is "no value" in the schema."""
    if not reason_code:
        raise ValueError("a reason code is required")
    return DowntimeEvent(
        id=before.id, line=before.line, machine=before.machine, start=before.start,
        end=before.end, reason_code=reason_code,
        reason_text=reason_text or before.reason_text,
        category=before.category, micro_stop=before.micro_stop,
        note=note or before.note, coded_by=by)


async def code_downtime_via(
    query: HistoryQuery, sink: EditSink | None, id: str, reason_code: str,
    reason_text: str | None, note: str | None, *, by: str, at: datetime,
) -> tuple[DowntimeEvent, DowntimeEvent]:
    """Code a stop: read it, write the manual fields and an audit entry through the spool."""
    if sink is None:
        raise RuntimeError("coding a stop needs the historian (it writes through the spool)")
    before = await query.get_downtime(id)
    if before is None:
        raise DowntimeNotFound(f"no downtime event {id!r}")
    after = coded(before, reason_code, reason_text, note, by)
    await sink([encode_coding(after), encode_audit(before, after, by, at)])
    return before, after
