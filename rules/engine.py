"""The engine: one tracker per machine, fed samples and clock ticks, answering with events.

It also builds the live view the API serves. Like the trackers it never reads the
wall clock: the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from linemon.config import PlantConfig
from linemon.model import Event, MachineState, OeeFigures, Sample
from rules.alerting import AlertEngine
from rules.calendar import ShiftCalendar
from rules.tracker import MachineSettings, MachineTracker


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


class Engine:
    def __init__(self, config: PlantConfig, now: datetime) -> None:
        self.config = config
        self.calendar = ShiftCalendar(config.calendar, config.site.timezone)
        self.trackers: dict[str, MachineTracker] = {}
        self._by_source: dict[str, list[MachineTracker]] = {}
        for line, machine in config.machines():
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
            )
            tracker = MachineTracker.start(settings, self.calendar, now)
            self.trackers[machine.id] = tracker
            self._by_source.setdefault(machine.source, []).append(tracker)
        self.alerts = AlertEngine(config.rules, {m.id: ln.id for ln, m in config.machines()})

    def on_sample(self, sample: Sample, now: datetime | None = None) -> list[Event]:
        tracker = self.trackers.get(sample.machine)
        events = tracker.on_sample(sample) if tracker is not None else []
        self.alerts.on_sample(sample, now or sample.received_ts)
        for event in events:
            self.alerts.on_event(event)
        return events

    def on_tick(self, now: datetime) -> list[Event]:
        events: list[Event] = []
        for tracker in self.trackers.values():
            events += tracker.on_tick(now)
        for event in events:
            self.alerts.on_event(event, now)
        return events + self.alerts.on_tick(now)

    def source_lost(self, source: str, at: datetime, why: str) -> list[Event]:
        events: list[Event] = []
        for tracker in self._by_source.get(source, []):
            events += tracker.source_lost(at, why)
        for event in events:
            self.alerts.on_event(event)
        return events

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
            oee=account.figures() if account else None,
            data_age_s=(now - t.last_seen).total_seconds() if t.last_seen else None,
            values=dict(t.values),
        )

    def line_view(self, line_id: str, now: datetime) -> LineView:
        line = next(line for line in self.config.lines if line.id == line_id)
        machines = [self.machine_view(m.id, now) for m in line.machines]
        end = next(
            (m for m in machines if m.machine == line.end_machine), machines[-1]
        )
        shift = self.calendar.shift_at(now)
        if shift is None:
            return LineView(line.id, line.name or line.id, now, None, None, None, None,
                            None, 0, None, None, machines)
        planned_total = shift.planned_s
        elapsed = shift.planned_between(shift.start, now)
        line_ict = max(m.ideal_cycle_time_s for m in line.machines)
        actual = end.good
        moving = shift.target * elapsed / planned_total if shift.target and planned_total else None
        forecast = actual + actual / elapsed * (planned_total - elapsed) if elapsed > 0 else None
        oee = _line_oee(end.oee, actual, line_ict)
        return LineView(
            line=line.id,
            name=line.name or line.id,
            at=now,
            shift=shift.name,
            shift_start=shift.start,
            shift_end=shift.end,
            target=shift.target,
            moving_target=moving,
            actual=actual,
            forecast=forecast,
            oee=oee,
            machines=machines,
        )


def _line_oee(end: OeeFigures | None, good: int, line_ict: float) -> OeeFigures | None:
    """Output-based line OEE: good parts at the line end x the line's ideal cycle time."""
    if end is None:
        return None
    planned = end.planned_time_s
    oee = good * line_ict / planned if planned > 0 else None
    return OeeFigures(
        planned_time_s=planned,
        run_time_s=end.run_time_s,
        ideal_cycle_time_s=line_ict,
        total_count=end.total_count,
        good_count=good,
        availability=end.availability,
        performance=line_ict * end.total_count / end.run_time_s if end.run_time_s > 0 else None,
        quality=end.quality,
        oee=oee,
        losses_s=dict(end.losses_s),
    )
