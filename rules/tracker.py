"""One machine's state, stops and counts, driven by samples and by the clock.

The tracker is pure: it gets samples (with their source timestamps) and `now`
from its caller and answers with events. A machine that silently stops
producing, or whose data goes stale, is caught on the clock tick, not only when
the next sample happens to arrive.

Time is booked into one ShiftAccount per shift (rules/shift_book.py). A stop is one event however
many shifts it spans; whether it was a micro-stop is known only at its end, so the
tracker remembers how much of it each account booked and moves that time to the
performance loss then. The failure (or micro-stop) is counted in the shift it began in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from linemon.config import StateMapEntry
from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    DowntimeEvent,
    DowntimeStarted,
    Event,
    MachineState,
    PartsProduced,
    Quality,
    Sample,
    Signal,
    StateChanged,
)
from rules.calendar import ShiftCalendar
from rules.counters import PartCounter, plausible_parts
from rules.machine_settings import MachineSettings
from rules.oee import ShiftAccount, StopTime
from rules.shift_book import ShiftBook

__all__ = ["MachineSettings", "MachineTracker"]

_STOP_CATEGORY = {
    MachineState.DOWN: DowntimeCategory.UNPLANNED,
    MachineState.CHANGEOVER: DowntimeCategory.CHANGEOVER,
    MachineState.PLANNED_STOP: DowntimeCategory.PLANNED,
}
# states whose reason the fault-code tag gives (PLCs put the changeover code there too)
_CODED = frozenset({MachineState.DOWN, MachineState.CHANGEOVER})
# states a machine may finish parts in (offline is unknown: it may have been producing)
_PRODUCING = frozenset({MachineState.RUNNING, MachineState.IDLE, MachineState.OFFLINE})
_COUNT_SIGNALS = frozenset({Signal.GOOD_COUNT, Signal.REJECT_COUNT, Signal.TOTAL_COUNT})
PRODUCT_SIGNAL = "product"
# on_sample runs for every sample, and an enum attribute lookup costs about 0.1 µs
_STATE, _FAULT_CODE = Signal.STATE, Signal.FAULT_CODE
_BAD, _OFFLINE, _DOWN = Quality.BAD, MachineState.OFFLINE, MachineState.DOWN


@dataclass(slots=True)
class MachineTracker:
    settings: MachineSettings
    calendar: ShiftCalendar  # scoped to this machine: its maintenance windows included
    state: MachineState
    since: datetime
    reason_code: str | None = None
    reason_text: str | None = None
    open_stop: DowntimeEvent | None = None
    last_seen: datetime | None = None  # receive time of the newest sample
    last_part_at: datetime | None = None
    reported_state: StateMapEntry | None = None  # the state tag's newest mapped value
    fault_code: str | None = None
    product: str | None = None
    values: dict[str, object] = field(default_factory=dict)
    counter: PartCounter = field(default_factory=PartCounter)
    startup_until: datetime | None = None  # rejects before this are startup rejects
    book: ShiftBook | None = None  # set by start()
    _count_seen: dict[str, float] = field(default_factory=dict)  # producing clock, per counter
    _producing_s: float = 0.0  # seconds in states the machine can finish parts in
    _stop_time: StopTime | None = None  # the open unplanned stop's booked time

    @classmethod
    def start(cls, settings: MachineSettings, calendar: ShiftCalendar, now: datetime):
        tracker = cls(settings, calendar, MachineState.OFFLINE, now, reason_text="no data yet")
        tracker.counter = PartCounter(settings.counter_max)
        tracker.book = ShiftBook(calendar, settings.ideal_cycle_time_s, now)
        return tracker

    @property
    def shifts(self) -> ShiftBook:
        assert self.book is not None, "use MachineTracker.start()"
        return self.book

    @property
    def account(self) -> ShiftAccount | None:
        """The current shift's account."""
        return self.shifts.account

    @property
    def closed_accounts(self) -> list[ShiftAccount]:
        return self.shifts.closed

    @property
    def booked_until(self) -> datetime | None:
        return self.shifts.booked_until

    def account_of(self, shift_key: str) -> ShiftAccount | None:
        return self.shifts.account_of(shift_key)

    def current_account(self, now: datetime) -> ShiftAccount | None:
        self._book(self._bookable_until(now))
        return self.shifts.current(now)

    # --- inputs --------------------------------------------------------------------

    def on_sample(self, sample: Sample) -> list[Event]:
        source_ts, since = sample.source_ts, self.since
        at = since if since > source_ts else source_ts  # max(source_ts, since), cheaper
        self.last_seen = sample.received_ts
        events: list[Event] = []
        signal = sample.signal
        if sample.quality is _BAD:
            if signal == _STATE:
                events += self._enter(MachineState.OFFLINE, at, None, "bad quality")
            return events
        self.values[signal] = sample.value
        if signal == _STATE:
            entry = self.settings.state_map.get(_code(sample.value))
            if entry is None:
                entry = StateMapEntry(state=MachineState.OFFLINE, reason=f"unmapped {sample.value}")
            self.reported_state = entry
            events += self._apply_reported(at)
        elif signal == _FAULT_CODE:
            self.fault_code = _code(sample.value) if sample.value not in (0, "0", "") else None
            # it names the open stop if that is one the code is for (a code arriving during a
            # break is for the stop that comes next, e.g. a changeover)
            if self.fault_code and self.open_stop and self.open_stop.reason_code is None \
                    and self.state in _CODED:
                self._set_reason(self.fault_code)
        elif signal in _COUNT_SIGNALS and isinstance(sample.value, int | float):
            events += self._count(signal, int(sample.value), at)
        elif signal == PRODUCT_SIGNAL:
            self.product = str(sample.value) if sample.value not in ("", None) else None
        if self.state is _OFFLINE and self.reported_state is not None:
            events += self._apply_reported(at)  # fresh data: the last reported state stands
        return events

    def on_tick(self, now: datetime) -> list[Event]:
        events: list[Event] = []
        s = self.settings
        stale = s.stale_after_s
        if stale and self.state is not MachineState.OFFLINE and self.last_seen is not None:
            stale_at = self.last_seen + timedelta(seconds=stale)
            if now >= stale_at:
                events += self._enter(MachineState.OFFLINE, max(stale_at, self.since), None,
                                      "stale")
        if not s.has_state_tag and self.state is MachineState.RUNNING and self.last_part_at:
            ict = s.ideal_cycle_time(self.product)
            if now - self.last_part_at >= timedelta(seconds=ict * s.no_count_stop_factor):
                due = self.last_part_at + timedelta(seconds=ict)
                events += self._enter(MachineState.DOWN, max(due, self.since), None, "no output")
        self._book(self._bookable_until(now))
        return events

    def source_lost(self, at: datetime, why: str) -> list[Event]:
        return self._enter(MachineState.OFFLINE, max(at, self.since), None, why)

    # --- state machine -------------------------------------------------------------

    def _apply_reported(self, at: datetime) -> list[Event]:
        entry = self.reported_state
        assert entry is not None
        reason_code = self.fault_code if entry.state in _CODED else None
        return self._enter(entry.state, at, reason_code, entry.reason, entry.breakdown)

    def _count(self, signal: str, value: int, at: datetime) -> list[Event]:
        s = self.settings
        self._book(at)
        # How many parts could have been made since this counter's last reading: judged on
        # the time the machine could produce (a counter that sat still through an hour's
        # stop and then drops to 0 was reset, not wrapped). Without a state tag: all time.
        clock = self._producing_s if s.has_state_tag else at.timestamp()
        seen, self._count_seen[signal] = self._count_seen.get(signal), clock
        fastest = s.ideal_cycle_time_s
        if s.products:  # (no list to build for the usual machine without products)
            fastest = min([fastest, *s.products.values()])
        limit = plausible_parts(clock - seen, fastest) if seen is not None else None
        good, reject = self.counter.update(signal, value, limit)
        if not good and not reject:
            return []
        events: list[Event] = []
        self.last_part_at = at
        if not s.has_state_tag and self.state is not MachineState.RUNNING:
            events += self._enter(MachineState.RUNNING, at, None, None)
        ict = s.ideal_cycle_time(self.product)
        startup = self.startup_until is not None and at < self.startup_until
        account = self.shifts.account_for_parts(at)
        if account is not None:
            account.add_parts(good, reject, ict, startup)
        events.append(PartsProduced(s.line, s.machine, at, good, reject, ict))
        return events

    def _enter(self, state: MachineState, at: datetime, code: str | None, text: str | None,
               breakdown: bool = False) -> list[Event]:
        if state is self.state:
            if code and self.open_stop is not None and self.open_stop.reason_code is None:
                self._set_reason(code)
            return []
        self._book(at)
        events: list[Event] = []
        if self.open_stop is not None:
            events.append(self._close_stop(at))
        previous = self.state
        self.state, self.since = state, at
        self.reason_code = code
        self.reason_text = self._reason_text(code) if code else text
        s = self.settings
        category = _STOP_CATEGORY.get(state)
        if category is not None:
            category = self._calendar_category(category, at)
        events.append(StateChanged(s.line, s.machine, at, state, previous, code, self.reason_text))
        if category is not None:
            self.open_stop = DowntimeEvent(
                id=f"{s.machine}:{at.isoformat()}", line=s.line, machine=s.machine, start=at,
                reason_code=code, reason_text=self.reason_text, category=category,
            )
            self._stop_time = None
            if category is DowntimeCategory.UNPLANNED:
                self._stop_time = StopTime(micro=not breakdown)
                if breakdown:
                    self._count_failure(at)
            events.append(DowntimeStarted(replace(self.open_stop)))
        return events

    def _calendar_category(self, category: DowntimeCategory, at: datetime) -> DowntimeCategory:
        """A stop that begins in a break or maintenance window is planned, and is named
        after it when it has no reason of its own."""
        shift = self.calendar.shift_at(at)
        planned = shift.planned_down_at(at) if shift is not None else None
        if category is DowntimeCategory.UNPLANNED and planned is not None:
            category = DowntimeCategory.PLANNED
        if category is DowntimeCategory.PLANNED and self.reason_text is None:
            self.reason_text = planned.reason if planned else None if shift else "no shift"
        return category

    def _close_stop(self, at: datetime) -> DowntimeEnded:
        stop = self.open_stop
        assert stop is not None
        stop.end = at
        booked = self._stop_time
        if booked is not None:
            self._outlasted(at)
            stop.micro_stop = booked.micro
            if booked.micro:
                began = self._account_at(stop.start)
                if began is not None:
                    began.micro_stops += 1
        if not stop.micro_stop and self.settings.startup_window_s > 0:
            self.startup_until = at + timedelta(seconds=self.settings.startup_window_s)
        self._stop_time = None
        self.open_stop = None
        return DowntimeEnded(replace(stop))

    def _outlasted(self, until: datetime) -> None:
        """An unplanned stop that reaches the micro-stop threshold is a breakdown."""
        booked, stop = self._stop_time, self.open_stop
        if booked is None or stop is None or not booked.micro:
            return
        if (until - stop.start).total_seconds() >= self.settings.micro_stop_threshold_s:
            booked.to_breakdown()
            self._count_failure(stop.start)

    def _count_failure(self, began_at: datetime) -> None:
        """In the shift the stop began in; before any booking, in the first it books into."""
        began = self._account_at(began_at)
        if began is not None and self._stop_time is not None:
            began.failures += 1
            self._stop_time.failure_counted = True

    def _set_reason(self, code: str) -> None:
        assert self.open_stop is not None
        self.reason_code = self.open_stop.reason_code = code
        self.reason_text = self.open_stop.reason_text = self._reason_text(code)

    def _reason_text(self, code: str) -> str:
        return self.settings.reason_codes.get(code, f"code {code}")

    # --- time booking ----------------------------------------------------------------

    def _bookable_until(self, now: datetime) -> datetime:
        s = self.settings
        if not s.has_state_tag and self.state is MachineState.RUNNING and self.last_part_at:
            # A derived stop is back-dated to when the next part was due; keep that open.
            due = timedelta(seconds=s.ideal_cycle_time(self.product))
            return min(now, self.last_part_at + due)
        return now

    def _book(self, until: datetime) -> None:
        shifts, state = self.shifts, self.state
        start = shifts.booked_until
        if start is None or until <= start:
            return
        if state in _PRODUCING:
            self._producing_s += (until - start).total_seconds()
        booked = self._stop_time
        for account, seconds in shifts.book(until, state):
            if seconds and state is _DOWN and booked is not None:
                booked.add(account, seconds)
                if not booked.micro and not booked.failure_counted:
                    account.failures += 1
                    booked.failure_counted = True
        self._outlasted(until)

    def _account_at(self, t: datetime) -> ShiftAccount | None:
        """The account of the shift `t` is in; else the first the open stop booked into."""
        found = self.shifts.account_at(t)
        if found is None and self._stop_time is not None and self._stop_time.booked:
            found = self._stop_time.booked[0][0]
        return found


def _code(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = int(value)
    return str(value)
