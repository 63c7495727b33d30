"""The engine: one tracker per machine, fed samples and clock ticks, answering with events.

It also builds the live view the API serves, and closes shifts: when a shift is over (every
tracker has booked past its end) it writes each machine's and each line's final figures as
OEE snapshots, and keeps a ShiftReport. Live figures (the shift so far) and closed ones come
from the same accounts. Like the trackers it never reads the wall clock: the caller passes
`now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from linemon.config import LineConfig, PlantConfig
from linemon.model import Event, MachineState, OeeFigures, OeeSnapshot, Sample, StateChanged
from rules.alerting import AlertEngine
from rules.bottleneck import HORIZON, ActivityLog, BottleneckReport, momentary
from rules.calendar import ShiftCalendar, ShiftInstance
from rules.kpi import LossShare, ShiftProgress, line_oee, loss_shares, shift_progress
from rules.oee import OeePolicy
from rules.shift_report import ShiftReport, bottleneck_report, line_ideal_cycle_time
from rules.tracker import MachineSettings, MachineTracker

__all__ = ["Engine", "LineView", "MachineView", "line_oee"]
BOTTLENECK_REFRESH = timedelta(seconds=60)  # the live shift's shares are recomputed this often
FORGET_EVERY = timedelta(hours=1)  # how often active periods beyond HORIZON are dropped
KEEP_REPORTS = 6


@dataclass(frozen=True, slots=True)
class MachineView:
    line: str
    machine: str
    name: str
    state: MachineState
    since: datetime
    time_in_state_s: float
    reason_code: str | None
    reason_text: str | None
    good: int
    reject: int
    oee: OeeFigures | None
    data_age_s: float | None
    values: dict[str, object]
    product: str | None = None


@dataclass(frozen=True, slots=True)
class BottleneckView:
    machine: str | None  # the momentary bottleneck: the longest active period running now
    active_since: datetime | None
    shift: BottleneckReport | None  # the shift so far (refreshed every minute)


@dataclass(frozen=True, slots=True)
class LineView:
    line: str
    name: str
    at: datetime
    shift: str | None
    shift_start: datetime | None
    shift_end: datetime | None
    target: int | None
    moving_target: float | None
    actual: int
    forecast: float | None
    oee: OeeFigures | None
    machines: list[MachineView]
    progress: ShiftProgress | None = None
    losses: list[LossShare] = field(default_factory=list)
    bottleneck: BottleneckView | None = None


class Engine:
    def __init__(self, config: PlantConfig, now: datetime) -> None:
        self.config = config
        self.calendar = ShiftCalendar(config.calendar, config.site.timezone)
        self.policy = OeePolicy(config.oee.planned_stops_count_against_availability)
        self.trackers: dict[str, MachineTracker] = {}
        self._by_source: dict[str, list[MachineTracker]] = {}
        self._lines = {line.id: line for line in config.lines}
        self._line_calendars = {lid: self.calendar.scoped(lid) for lid in self._lines}
        self.activity: dict[str, dict[str, ActivityLog]] = {lid: {} for lid in self._lines}
        for line, machine in config.machines():
            window = machine.startup_window_s
            settings = MachineSettings(
                line=line.id,
                machine=machine.id,
                name=machine.name or machine.id,
                ideal_cycle_time_s=machine.ideal_cycle_time_s,
                state_map=config.state_map(machine.state_map),
                reason_codes=config.reason_codes,
                has_state_tag="state" in machine.tags,
                micro_stop_threshold_s=machine.micro_stop_threshold_s,
                stale_after_s=machine.stale_after_s,
                no_count_stop_factor=machine.no_count_stop_factor,
                counter_max=machine.counter_max,
                products={p: c.ideal_cycle_time_s for p, c in machine.products.items()},
                startup_window_s=config.oee.startup_window_s if window is None else window,
            )
            calendar = self.calendar.scoped(line.id, machine.id)
            tracker = MachineTracker.start(settings, calendar, now)
            self.trackers[machine.id] = tracker
            self._by_source.setdefault(machine.source, []).append(tracker)
            self.activity[line.id][machine.id] = ActivityLog()
        self.alerts = AlertEngine(config.rules, {m.id: ln.id for ln, m in config.machines()})
        for w in config.calendar.maintenance:  # nobody is paged for planned maintenance
            targets = [("line", lid) for lid in (w.lines or [])]
            targets += [("machine", mid) for mid in (w.machines or [])]
            if w.lines is None and w.machines is None:
                targets = [("line", lid) for lid in self._lines]
            for kind, target in targets:
                self.alerts.maintenance(**{kind: target}, starts=w.start, ends=w.end,
                                        by="calendar", comment=w.reason)
        self.reports: dict[str, list[ShiftReport]] = {lid: [] for lid in self._lines}
        self._closed_until = now  # shifts that ended by then are closed (or before our time)
        self._next_end = self._first_end_after(now)
        self._last_snapshot = now
        self._bottleneck_cache: dict[str, tuple[datetime, BottleneckReport]] = {}
        self._forgot_at = now

    # --- inputs ----------------------------------------------------------------------

    def on_sample(self, sample: Sample, now: datetime | None = None) -> list[Event]:
        return self.on_samples([sample], now)

    def on_samples(self, samples: list[Sample], now: datetime | None = None) -> list[Event]:
        """The samples in turn; the events of all, in order. One call per batch (a source's
        batch holds up to thousands of samples), the lookups hoisted out of the loop."""
        events: list[Event] = []
        trackers, alerts = self.trackers, self.alerts
        for sample in samples:
            tracker = trackers.get(sample.machine)
            made = tracker.on_sample(sample) if tracker is not None else []
            alerts.on_sample(sample, now or sample.received_ts)
            for event in made:
                self._note(event)
                alerts.on_event(event)
            events += made
        return events

    def on_tick(self, now: datetime) -> list[Event]:
        events: list[Event] = []
        for tracker in self.trackers.values():
            events += tracker.on_tick(now)
        for event in events:
            self._note(event)
            self.alerts.on_event(event, now)
        if now - self._forgot_at >= FORGET_EVERY:
            self._forget_activity(now)
        return events + self.alerts.on_tick(now) + self._snapshots(now)

    def source_lost(self, source: str, at: datetime, why: str) -> list[Event]:
        events: list[Event] = []
        for tracker in self._by_source.get(source, []):
            events += tracker.source_lost(at, why)
        for event in events:
            self._note(event)
            self.alerts.on_event(event)
        return events

    def _forget_activity(self, now: datetime) -> None:
        """Closing a shift drops the periods beyond HORIZON, but with no shift to close for
        days (a weekend, a shutdown) a machine cycling through idle would keep them all."""
        self._forgot_at = now
        for logs in self.activity.values():
            for log in logs.values():
                log.forget_before(now - HORIZON)

    def _note(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.activity[event.line][event.machine].on_state(event.at, event.state)

    # --- closing shifts and snapshots ----------------------------------------------------

    def _snapshots(self, now: datetime) -> list[Event]:
        out: list[Event] = []
        if now >= self._next_end:
            # closed once every tracker has booked past the end (a machine without a state
            # tag holds its last cycle open until it knows whether it stopped)
            booked = min([now, *(t.booked_until or now for t in self.trackers.values())])
            for shift in self.calendar.shifts_between(self._closed_until, booked):
                if self._closed_until < shift.end <= booked:
                    for lid in self._lines:
                        out += self._close(lid, shift).snapshots()
                    self._closed_until = shift.end
            self._next_end = self._first_end_after(self._closed_until)
        every = self.config.oee.snapshot_every_s
        if every and (now - self._last_snapshot).total_seconds() >= every:
            self._last_snapshot = now
            for lid in self._lines:
                out += self._live_snapshots(lid, now)
        return out

    def _first_end_after(self, t: datetime) -> datetime:
        ends = [s.end for s in self.calendar.shifts_between(t, t + timedelta(days=8))
                if s.end > t]
        return min(ends) if ends else t + timedelta(days=1)  # none soon: look again later

    def _close(self, lid: str, shift: ShiftInstance) -> ShiftReport:
        line = self._lines[lid]
        accounts = {m.id: self.trackers[m.id].account_of(shift.key) for m in line.machines}
        figures = {mid: a.figures(self.policy) if a else None for mid, a in accounts.items()}
        end = figures[_end_machine(line)]
        logs = self.activity[lid]
        report = ShiftReport(
            line=lid, shift=shift, machines=figures,
            line_figures=line_oee(end, end.good_count if end else 0, line_ideal_cycle_time(line)),
            losses=loss_shares(figures),
            bottleneck=bottleneck_report(logs, self._line_calendars[lid], shift, shift.end))
        reports = self.reports[lid]
        reports.append(report)
        del reports[:-KEEP_REPORTS]
        for log in logs.values():
            log.forget_before(shift.end - HORIZON)
        return report

    def _live_snapshots(self, lid: str, now: datetime) -> list[OeeSnapshot]:
        view = self.line_view(lid, now, with_bottleneck=False)
        shift = self.calendar.shift_at(now)
        key = shift.key if shift else None
        out = [OeeSnapshot(now, lid, m.machine, m.oee, key) for m in view.machines if m.oee]
        if view.oee is not None:
            out.append(OeeSnapshot(now, lid, None, view.oee, key))
        return out

    # --- live view -------------------------------------------------------------------

    def machine_view(self, machine: str, now: datetime) -> MachineView:
        t = self.trackers[machine]
        account = t.current_account(now)
        return MachineView(
            line=t.settings.line,
            machine=t.settings.machine,
            name=t.settings.name,
            state=t.state,
            since=t.since,
            time_in_state_s=max(0.0, (now - t.since).total_seconds()),
            reason_code=t.reason_code,
            reason_text=t.reason_text,
            good=account.good if account else 0,
            reject=account.reject if account else 0,
            oee=account.figures(self.policy) if account else None,
            data_age_s=(now - t.last_seen).total_seconds() if t.last_seen else None,
            values=dict(t.values),
            product=t.product,
        )

    def states(self) -> list[tuple[str, str, MachineState]]:
        """(line, machine, state) of every machine, for metrics."""
        return [(t.settings.line, t.settings.machine, t.state) for t in self.trackers.values()]

    def line_view(self, line_id: str, now: datetime, with_bottleneck: bool = True) -> LineView:
        line = self._lines[line_id]
        machines = [self.machine_view(m.id, now) for m in line.machines]
        end = next(m for m in machines if m.machine == _end_machine(line))
        shift = self._line_calendars[line_id].shift_at(now)
        bottleneck = self.bottleneck_view(line_id, now, shift) if with_bottleneck else None
        if shift is None:
            return LineView(line.id, line.name or line.id, now, None, None, None, None,
                            None, 0, None, None, machines, bottleneck=bottleneck)
        progress = shift_progress(shift, now, end.good)
        return LineView(
            line=line.id,
            name=line.name or line.id,
            at=now,
            shift=shift.name,
            shift_start=shift.start,
            shift_end=shift.end,
            target=shift.target,
            moving_target=progress.moving_target,
            actual=progress.actual,
            forecast=progress.forecast,
            oee=line_oee(end.oee, end.good, line_ideal_cycle_time(line)),
            machines=machines,
            progress=progress,
            losses=loss_shares({m.machine: m.oee for m in machines}),
            bottleneck=bottleneck,
        )

    def bottleneck_view(self, line_id: str, now: datetime,
                        shift: ShiftInstance | None = None) -> BottleneckView:
        logs = self.activity[line_id]
        found = momentary(logs, now)
        report = None
        if shift is not None:
            cached = self._bottleneck_cache.get(line_id)
            if cached is None or cached[1].start != shift.start \
                    or now - cached[0] >= BOTTLENECK_REFRESH or now < cached[0]:
                calendar = self._line_calendars[line_id]
                cached = (now, bottleneck_report(logs, calendar, shift, now))
                self._bottleneck_cache[line_id] = cached
            report = cached[1]
        return BottleneckView(found[0] if found else None, found[1] if found else None, report)


def _end_machine(line: LineConfig) -> str:
    return line.end_machine or line.machines[-1].id
