"""One machine's state, stops and counts, driven by samples and by the clock.

The tracker is pure: it gets samples (with their source timestamps) and `now`
from its caller and answers with events. A machine that silently stops
producing, or whose data goes stale, is caught on the clock tick, not only when
the next sample happens to arrive.
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
from rules.calendar import ShiftCalendar, ShiftInstance
from rules.counters import PartCounter
from rules.oee import ShiftAccount

_STOP_CATEGORY = {
    MachineState.DOWN: DowntimeCategory.UNPLANNED,
    MachineState.CHANGEOVER: DowntimeCategory.CHANGEOVER,
    MachineState.PLANNED_STOP: DowntimeCategory.PLANNED,
}
_COUNT_SIGNALS = frozenset({Signal.GOOD_COUNT, Signal.REJECT_COUNT, Signal.TOTAL_COUNT})


@dataclass(frozen=True, slots=True)
class MachineSettings:
    line: str
    machine: str
    name: str
    ideal_cycle_time_s: float
    state_map: dict[str, StateMapEntry]
    reason_codes: dict[str, str]
    has_state_tag: bool
    micro_stop_threshold_s: float = 30.0
    stale_after_s: float | None = None
    no_count_stop_factor: float = 5.0
    counter_max: int | None = None


@dataclass(slots=True)
class MachineTracker:
    settings: MachineSettings
    calendar: ShiftCalendar
    state: MachineState
    since: datetime
    reason_code: str | None = None
    reason_text: str | None = None
    open_stop: DowntimeEvent | None = None
    last_seen: datetime | None = None  # receive time of the newest sample
    last_part_at: datetime | None = None
    reported_state: StateMapEntry | None = None  # the state tag's newest mapped value
    fault_code: str | None = None
    values: dict[str, object] = field(default_factory=dict)
    account: ShiftAccount | None = None
    closed_accounts: list[ShiftAccount] = field(default_factory=list)
    counter: PartCounter = field(default_factory=PartCounter)
    _booked_until: datetime | None = None

    @classmethod
    def start(cls, settings: MachineSettings, calendar: ShiftCalendar, now: datetime):
        tracker = cls(settings, calendar, MachineState.OFFLINE, now, reason_text="no data yet")
        tracker.counter = PartCounter(settings.counter_max)
        tracker._booked_until = now
        return tracker

    # --- inputs --------------------------------------------------------------------

    def on_sample(self, sample: Sample) -> list[Event]:
        at = max(sample.source_ts, self.since)
        self.last_seen = sample.received_ts
        events: list[Event] = []
        signal = sample.signal
        if sample.quality is Quality.BAD:
            if signal == Signal.STATE:
                events += self._enter(MachineState.OFFLINE, at, None, "bad quality")
            return events
        self.values[signal] = sample.value
        if signal == Signal.STATE:
            entry = self.settings.state_map.get(_code(sample.value))
            if entry is None:
                entry = StateMapEntry(state=MachineState.OFFLINE, reason=f"unmapped {sample.value}")
            self.reported_state = entry
            events += self._apply_reported(at)
        elif signal == Signal.FAULT_CODE:
            self.fault_code = _code(sample.value) if sample.value not in (0, "0", "") else None
            if self.fault_code and self.open_stop and self.open_stop.reason_code is None:
                self._set_reason(self.fault_code)
        elif signal in _COUNT_SIGNALS and isinstance(sample.value, int | float):
            events += self._count(signal, int(sample.value), at)
        if self.state is MachineState.OFFLINE and self.reported_state is not None:
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
            limit = timedelta(seconds=s.ideal_cycle_time_s * s.no_count_stop_factor)
            if now - self.last_part_at >= limit:
                due = self.last_part_at + timedelta(seconds=s.ideal_cycle_time_s)
                events += self._enter(MachineState.DOWN, max(due, self.since), None, "no output")
        self._book(self._bookable_until(now))
        return events

    def source_lost(self, at: datetime, why: str) -> list[Event]:
        return self._enter(MachineState.OFFLINE, max(at, self.since), None, why)

    # --- state machine -------------------------------------------------------------

    def _apply_reported(self, at: datetime) -> list[Event]:
        entry = self.reported_state
        assert entry is not None
        reason_code = self.fault_code if entry.state is MachineState.DOWN else None
        return self._enter(entry.state, at, reason_code, entry.reason)

    def _count(self, signal: str, value: int, at: datetime) -> list[Event]:
        good, reject = self.counter.update(signal, value)
        if not good and not reject:
            return []
        events: list[Event] = []
        self.last_part_at = at
        if not self.settings.has_state_tag and self.state is not MachineState.RUNNING:
            events += self._enter(MachineState.RUNNING, at, None, None)
        self._book(at)
        if self.account is not None and self.account.shift.start <= at < self.account.shift.end:
            self.account.good += good
            self.account.reject += reject
        s = self.settings
        events.append(PartsProduced(s.line, s.machine, at, good, reject))
        return events

    def _enter(
        self, state: MachineState, at: datetime, code: str | None, text: str | None
    ) -> list[Event]:
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
        events.append(StateChanged(s.line, s.machine, at, state, previous, code, self.reason_text))
        category = _STOP_CATEGORY.get(state)
        if category is not None:
            self.open_stop = DowntimeEvent(
                id=f"{s.machine}:{at.isoformat()}",
                line=s.line,
                machine=s.machine,
                start=at,
                reason_code=code,
                reason_text=self.reason_text,
                category=category,
            )
            if self.account is not None:
                self.account.stop_started()
            events.append(DowntimeStarted(replace(self.open_stop)))
        return events

    def _close_stop(self, at: datetime) -> DowntimeEnded:
        stop = self.open_stop
        assert stop is not None
        stop.end = at
        stop.micro_stop = (
            stop.category is DowntimeCategory.UNPLANNED
            and stop.duration_s() < self.settings.micro_stop_threshold_s
        )
        if self.account is not None and stop.category is DowntimeCategory.UNPLANNED:
            self.account.stop_ended(stop.micro_stop)
        self.open_stop = None
        return DowntimeEnded(replace(stop))

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
            return min(now, self.last_part_at + timedelta(seconds=s.ideal_cycle_time_s))
        return now

    def _book(self, until: datetime) -> None:
        start = self._booked_until
        if start is None or until <= start:
            return
        acct = self.account
        if acct is not None and acct.shift.start <= start and until <= acct.shift.end:
            acct.book(start, until, self.state)  # the common case: inside the current shift
        else:
            for shift in self.calendar.shifts_between(start, until):
                self._account_for(shift).book(max(start, shift.start), until, self.state)
        self._booked_until = until

    def _account_for(self, shift: ShiftInstance) -> ShiftAccount:
        if self.account is None or self.account.shift.key != shift.key:
            if self.account is not None:
                self.closed_accounts.append(self.account)
                del self.closed_accounts[:-6]
            self.account = ShiftAccount(shift, self.settings.ideal_cycle_time_s)
            if self.open_stop is not None:
                self.account.stop_started()
        return self.account

    def current_account(self, now: datetime) -> ShiftAccount | None:
        self._book(self._bookable_until(now))
        shift = self.calendar.shift_at(now)
        if shift is None:
            return None
        return self._account_for(shift)


def _code(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = int(value)
    return str(value)

