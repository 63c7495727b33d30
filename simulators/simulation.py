"""The whole simulated plant on simulated time: lines, calendar, timeline, truth and sinks.

Pure and synchronous: `advance_to(t_ms)` runs every event up to `t_ms` and hands the changed
tags of each instant to the sinks. Whoever owns the wall clock (the runner in plant.py, or a
test) decides how fast simulated time goes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from simulators.calendar import ShiftCalendar
from simulators.events import EventQueue
from simulators.line import SimulatedLine
from simulators.machine import SimulatedMachine
from simulators.process import speed_of
from simulators.scenario import Scenario
from simulators.signals import SIGNAL_NAMES, Change, StateCode, Value, to_ms
from simulators.timeline import TimelineEntry
from simulators.truth import TruthRecorder

# indexes into SIGNAL_NAMES: state_code, state, fault_code, then counters and process values
_ORDER = (0, 1, 2, 3, 4, 5, 6, 7)
_ORDER_FAULT = (2, 0, 1, 3, 4, 5, 6, 7)


class Sink(Protocol):
    """Something that serves the tags: gets every instant's changes, and link up/down."""

    def publish(self, t_ms: int, changes: list[Change]) -> None: ...

    def link(self, t_ms: int, up: bool) -> None: ...


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        *,
        start: datetime,
        seed: int | None = None,
        end: datetime | None = None,
        sample_process: bool = True,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start_ms = to_ms(start)
        self.end_ms = to_ms(end) if end is not None else None
        self.now_ms = self.start_ms
        self.queue = EventQueue()
        self.calendar = ShiftCalendar(scenario.calendar) if scenario.calendar else None
        self.truth = TruthRecorder(scenario, self.seed, self.start_ms, self.calendar)
        self.sinks: list[Sink] = []
        self.mqtt_up = True
        self._overrides: dict[tuple[str, str], object] = {}
        self.lines = [
            SimulatedLine(
                spec, self.seed, self.queue, self.start_ms, self.truth.on_part, scenario.reason_text
            )
            for spec in scenario.lines
        ]
        self.machines: dict[str, SimulatedMachine] = {
            m.id: m for line in self.lines for m in line.machines
        }
        self._values: dict[str, tuple[Value, ...]] = {}  # as last published, SIGNAL_NAMES order
        self._stamps: dict[str, list[int]] = {}  # when each of them last changed
        start_ms = self.start_ms
        if self.calendar is not None:
            self.queue.schedule(start_ms, self._calendar_tick)
        for entry in scenario.timeline:
            at = start_ms + round(entry.at_s * 1000)
            self.queue.schedule(at, lambda t, e=entry: self._apply(e, t))
        for machine in self.machines.values():
            machine.start_random(start_ms)
        if sample_process:
            self.queue.schedule(start_ms, self._sample_process)
        self._run_instant(start_ms, baseline=True)

    # -- running ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.end_ms is not None and self.now_ms >= self.end_ms

    def next_event_ms(self) -> int | None:
        return self.queue.next_time()

    def advance_to(self, t_ms: int, max_instants: int | None = None) -> bool:
        """Run every event due up to and including `t_ms` (never past the scenario end).

        With `max_instants`, stop early after that many instants and return False (simulated
        time then stands at the last instant run); True once `t_ms` is reached.
        """
        if self.end_ms is not None:
            t_ms = min(t_ms, self.end_ms)
        done = 0
        while True:
            nxt = self.queue.next_time()
            if nxt is None or nxt > t_ms:
                break
            if max_instants is not None and done >= max_instants:
                return False
            self._run_instant(nxt)
            done += 1
        self.now_ms = max(self.now_ms, t_ms)
        return True

    def command(self, t_ms: int, action: Callable[[int], None]) -> None:
        """Apply an outside command at `t_ms` (>= now): e.g. a fault injected by a test."""
        self.advance_to(t_ms)
        if self.finished and self.end_ms is not None and t_ms >= self.end_ms:
            raise RuntimeError("the scenario has finished")
        action(t_ms)
        self._settle_and_emit(t_ms)

    def stop_machine(self, machine_id: str, reason: int, for_ms: int, t_ms: int) -> None:
        machine = self.machine(machine_id)
        text = self.scenario.reason_text(reason)
        self.command(
            t_ms, lambda t: machine.begin(t, StateCode.FAULT, reason, text, for_ms, "scripted")
        )

    def restart_plc(self, machine_id: str, t_ms: int) -> None:
        machine = self.machine(machine_id)

        def restart(t: int) -> None:
            machine.restart_plc(t)
            self.truth.on_restart(machine_id, t)

        self.command(t_ms, restart)

    def machine(self, machine_id: str) -> SimulatedMachine:
        try:
            return self.machines[machine_id]
        except KeyError:
            known = ", ".join(self.machines)
            raise KeyError(f"unknown machine {machine_id!r} (known: {known})") from None

    def build_truth(self) -> dict:
        counters = {
            mid: {"good_count": m.good_count, "reject_count": m.reject_count}
            for mid, m in self.machines.items()
        }
        return self.truth.build(self.now_ms, counters, complete=self.finished)

    # -- one instant -----------------------------------------------------------

    def _run_instant(self, t_ms: int, baseline: bool = False) -> None:
        while True:
            due = self.queue.pop_at(t_ms)
            if not due:
                break
            for action in due:
                action(t_ms)
        self.now_ms = t_ms
        self._settle_and_emit(t_ms, baseline)

    def _settle_and_emit(self, t_ms: int, baseline: bool = False) -> None:
        for line in self.lines:
            line.settle(t_ms)
        batch: list[Change] = []
        for line in self.lines:
            for machine in line.machines:
                if machine.dirty:
                    machine.dirty = False
                    self._diff(line.id, machine, t_ms, batch, baseline)
        if batch and not baseline:
            for sink in self.sinks:
                sink.publish(t_ms, batch)

    def _diff(self, line_id, machine: SimulatedMachine, t_ms: int, batch, baseline) -> None:
        old = self._values.get(machine.id)
        new = machine.values()
        if new == old:
            return
        if old is None or old[0] != new[0] or old[2] != new[2]:  # state or fault code
            machine.speed = speed_of(machine.cycle_ms, machine.state is StateCode.RUNNING)
            new = machine.values()
            self.truth.on_state(
                machine.id, t_ms, machine.state, machine.fault_code, machine.stop_text
            )
        self._values[machine.id] = new
        if old is None:
            self._stamps[machine.id] = [t_ms] * len(new)
            return
        stamps = self._stamps[machine.id]
        # a new fault reason goes out before the state; a cleared one after it
        for i in _ORDER_FAULT if new[2] else _ORDER:
            if old[i] != new[i]:
                stamps[i] = t_ms
                batch.append(Change(line_id, machine.id, SIGNAL_NAMES[i], new[i], t_ms))

    def snapshot(self) -> list[Change]:
        """Every tag's current value, stamped with the time it last changed."""
        return [
            Change(self.machines[mid].line_id, mid, SIGNAL_NAMES[i], value, self._stamps[mid][i])
            for mid, values in self._values.items()
            for i, value in enumerate(values)
        ]

    # -- scheduled happenings --------------------------------------------------

    def _calendar_tick(self, t_ms: int) -> None:
        assert self.calendar is not None
        text = self.calendar.planned_stop_at(t_ms)
        for machine in self.machines.values():
            machine.set_calendar_stop(t_ms, text)
        self.queue.schedule(self.calendar.next_boundary(t_ms), self._calendar_tick)

    def _sample_process(self, t_ms: int) -> None:
        for machine in self.machines.values():
            machine.sample_process(t_ms)
        step = max(1, round(self.scenario.process_interval_s * 1000))
        self.queue.schedule(t_ms + step, self._sample_process)

    def _apply(self, entry: TimelineEntry, t_ms: int) -> None:
        for_ms = round(entry.for_s * 1000) if entry.for_s is not None else None
        if entry.action == "disconnect":
            self._set_link(t_ms, False)
            assert for_ms is not None
            self.queue.schedule(t_ms + for_ms, lambda t: self._set_link(t, True))
            return
        machine = self.machines[entry.target]
        text = self.scenario.reason_text
        if entry.action == "down":
            assert entry.reason is not None and for_ms is not None
            machine.begin(
                t_ms, StateCode.FAULT, entry.reason, text(entry.reason), for_ms, "scripted"
            )
        elif entry.action == "changeover":
            code = entry.reason or 0
            label = self.scenario.reasons.get(code, "changeover")
            machine.begin(t_ms, StateCode.CHANGEOVER, code, label, for_ms or 0, "changeover")
        elif entry.action == "planned-stop":
            label = text(entry.reason) if entry.reason is not None else "planned stop"
            machine.begin(t_ms, StateCode.PLANNED_STOP, 0, label, for_ms or 0, "planned")
        elif entry.action == "plc-restart":
            machine.restart_plc(t_ms, for_ms)
            self.truth.on_restart(machine.id, t_ms)
        elif entry.action in ("rejects", "slow"):
            assert entry.percent is not None and for_ms is not None
            self._override(machine, entry.action, entry.percent / 100, t_ms + for_ms)

    def _override(self, machine: SimulatedMachine, what: str, amount: float, until: int) -> None:
        attr, value, normal = (
            ("reject_override", amount, None)
            if what == "rejects"
            else ("slow_factor", 1 + amount, 1.0)
        )
        token = object()
        setattr(machine, attr, value)
        self._overrides[(machine.id, attr)] = token

        def restore(_t: int) -> None:
            if self._overrides.get((machine.id, attr)) is token:
                setattr(machine, attr, normal)

        self.queue.schedule(until, restore)

    def _set_link(self, t_ms: int, up: bool) -> None:
        self.mqtt_up = up
        self.truth.on_link(t_ms, up)
        for sink in self.sinks:
            sink.link(t_ms, up)
