"""The one history query interface the API uses, and the logic both backends share.

Both backends fetch raw rows with cheap filters pushed down (machine, line, time range,
windowed sums) and hand them to the functions here for everything else (filters, order,
pagination, timelines, bucket filling), so the API gets the same answer from either.

Semantics:
- time ranges are half-open [start, end); datetimes are UTC;
- `downtime_events` returns stops that *started* in the range; an open stop's duration
  is measured to `now`;
- windows (`counts`, `signal_series`) are aligned to the Unix epoch; a bucket is labelled
  with its aligned start, even when `start` cuts it;
- `counts` returns every bucket (zeros included); `signal_series` only non-empty windows,
  over numeric values of quality good or uncertain;
- `state_timeline` starts with the state in effect at `start` (the last change before it)
  and ends at min(end, now).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar

from linemon.model import DowntimeCategory, DowntimeEvent, MachineState, PartsProduced

from .schema import OeeSnapshot, encode_audit, encode_coding, from_ns, to_ns
from .spool import Record

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


def select_downtime(
    events: Iterable[DowntimeEvent], *, now: datetime, reason_code: str | None = None,
    category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
    uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
    order: str = "start_desc",
) -> Page[DowntimeEvent]:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    picked = [
        ev for ev in events
        if (reason_code is None or ev.reason_code == reason_code)
        and (category is None or ev.category == category)
        and (not uncoded_only or ev.reason_code is None)
        and (min_duration_s is None or ev.duration_s(now) >= min_duration_s)
    ]
    descending = order != "start_asc"
    keyed = sorted(((_sort_key(ev, order, now), ev) for ev in picked),
                   key=lambda kv: kv[0], reverse=descending)
    if cursor is not None:
        after = decode_cursor(cursor, order)
        keyed = [kv for kv in keyed if (kv[0] < after if descending else kv[0] > after)]
    page = keyed[:limit]
    more = len(keyed) > limit
    return Page([ev for _, ev in page], encode_cursor(order, page[-1][0]) if more else None)


class DowntimeReads:
    """`downtime_events` and `all_downtime_events` for a backend, from its one read of the
    stops that started in a range (`_downtime`); filtering, order and pages are shared."""

    _clock: Callable[[], datetime]

    async def _downtime(self, start: datetime, end: datetime, line: str | None,
                        machine: str | None) -> list[DowntimeEvent]:
        raise NotImplementedError

    async def downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, reason_code: str | None = None,
        category: DowntimeCategory | str | None = None, min_duration_s: float | None = None,
        uncoded_only: bool = False, limit: int = 100, cursor: str | None = None,
        order: str = "start_desc",
    ) -> Page[DowntimeEvent]:
        return select_downtime(
            await self._downtime(start, end, line, machine), now=self._clock(),
            reason_code=reason_code, category=category, min_duration_s=min_duration_s,
            uncoded_only=uncoded_only, limit=limit, cursor=cursor, order=order)

    async def all_downtime_events(
        self, *, start: datetime, end: datetime, line: str | None = None,
        machine: str | None = None, category: DowntimeCategory | str | None = None,
    ) -> list[DowntimeEvent]:
        events = await self._downtime(start, end, line, machine)
        return sorted((ev for ev in events if category is None or ev.category == category),
                      key=lambda ev: (ev.start, ev.id))


# --- states and counts -----------------------------------------------------------------


def build_timeline(prior: StateRow | None, changes: Sequence[StateRow], start: datetime,
                   end: datetime, now: datetime) -> list[StateInterval]:
    s_ns, e_ns = to_ns(start), min(to_ns(end), max(to_ns(now), to_ns(start)))
    rows = ([prior] if prior is not None else []) + sorted(changes, key=lambda r: r.ts_ns)
    out: list[StateInterval] = []
    for i, row in enumerate(rows):
        a = max(row.ts_ns, s_ns)
        b = rows[i + 1].ts_ns if i + 1 < len(rows) else e_ns
        b = min(b, e_ns)
        if b > a:
            out.append(StateInterval(MachineState(row.state), from_ns(a), from_ns(b),
                                     row.reason_code, row.reason_text))
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
