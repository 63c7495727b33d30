"""One simulated machine: cycles, stops, rejects and counters on simulated time.

The machine is driven by an EventQueue and never looks at a wall clock. Its state is derived
from its conditions in priority order: off > fault > changeover > planned stop > blocked >
starved > running. Like a PLC with a debounced state word, short waits for a part or for space
(under `idle_report_s`) still show as running; they cost performance either way. Random
behaviour (cycle spread, breakdowns, micro-stops, rejects) comes from seeded random streams,
one per concern, so the same seed gives the same history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from simulators.buffer import Buffer
from simulators.events import EventQueue
from simulators.process import ProcessValues, speed_of
from simulators.signals import StateCode, Value
from simulators.specs import MachineSpec

PartListener = Callable[[str, int, bool], None]  # (machine id, t_ms, good)


@dataclass(eq=False, slots=True)
class Stop:
    """An active condition that stops the machine until `until_ms`."""

    state: StateCode
    code: int
    text: str
    until_ms: int
    kind: str  # "breakdown" | "micro" | "scripted" | "changeover" | "planned" | "restart"


class SimulatedMachine:
    def __init__(
        self,
        spec: MachineSpec,
        line_id: str,
        seed: int | str,
        queue: EventQueue,
        start_ms: int,
        on_part: PartListener,
        reason_text: Callable[[int], str],
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.line_id = line_id
        self.queue = queue
        self._on_part = on_part
        self._reason_text = reason_text
        base = f"{seed}:{line_id}:{spec.id}"
        self._rng_cycle = random.Random(f"{base}:cycle")
        self._rng_stops = random.Random(f"{base}:stops")
        self._rng_quality = random.Random(f"{base}:quality")
        self.process = ProcessValues(spec.process, random.Random(f"{base}:process"), start_ms)
        self.upstream: Buffer | None = None  # None: unlimited supply
        self.downstream: Buffer | None = None  # None: end of line
        self.off: Stop | None = None
        self.fault: Stop | None = None
        self.changeover: Stop | None = None
        self.planned: Stop | None = None  # scripted planned stop
        self.calendar_stop: str | None = None  # "break", "no shift" ...
        self.cycle_end_ms: int | None = None  # a part is in process and the cycle is running
        self.cycle_left_ms: int | None = None  # a part is in process, cycle paused
        self.cycle_ms: int | None = None  # length of the current cycle
        self._cycle_token = 0
        self.holding = False  # a finished good part waits for space downstream
        self.good_count = 0
        self.reject_count = 0
        self.reject_override: float | None = None
        self.slow_factor = 1.0
        self._reject_debt = 0.0
        self.speed = 0.0
        self._waiting = False  # starved or blocked right now
        self._idle_shown = False  # ... and for long enough to show it
        self._wait_token = 0
        self.dirty = True  # something published may have changed since the last diff

    # -- derived state ---------------------------------------------------------

    @property
    def operating(self) -> bool:
        return not (self.off or self.fault or self.changeover or self.planned or self.calendar_stop)

    @property
    def state(self) -> StateCode:
        if self.off:
            return StateCode.OFF
        if self.fault:
            return StateCode.FAULT
        if self.changeover:
            return StateCode.CHANGEOVER
        if self.planned or self.calendar_stop:
            return StateCode.PLANNED_STOP
        if self.holding:
            return StateCode.BLOCKED if self._idle_shown else StateCode.RUNNING
        if self.cycle_end_ms is None:
            return StateCode.STARVED if self._idle_shown else StateCode.RUNNING
        return StateCode.RUNNING

    @property
    def fault_code(self) -> int:
        if self.off:
            return 0
        if self.fault:
            return self.fault.code
        if self.changeover:
            return self.changeover.code
        return 0

    @property
    def stop_text(self) -> str:
        """Why the machine is not producing, for the ground truth."""
        for stop in (self.off, self.fault, self.changeover, self.planned):
            if stop:
                return stop.text
        return self.calendar_stop or ""

    def values(self) -> tuple[Value, ...]:
        """The published tags, in SIGNAL_NAMES order."""
        state = self.state
        return (
            int(state),
            _LABELS[state],
            self.fault_code,
            self.good_count,
            self.reject_count,
            self.speed,
            self.process.temperature,
            self.process.pressure,
        )

    def sample_process(self, now: int) -> None:
        running = self.state is StateCode.RUNNING
        self.process.sample(now, running)
        self.speed = speed_of(self.cycle_ms, running)
        self.dirty = True

    # -- conditions ------------------------------------------------------------

    def begin(
        self, now: int, state: StateCode, code: int, text: str, for_ms: int, kind: str
    ) -> None:
        """Start a stop condition now; it ends by itself after `for_ms`."""
        stop = Stop(state, code, text, now + max(1, for_ms), kind)
        slot = {
            StateCode.OFF: "off",
            StateCode.FAULT: "fault",
            StateCode.CHANGEOVER: "changeover",
            StateCode.PLANNED_STOP: "planned",
        }[state]
        setattr(self, slot, stop)
        self.dirty = True
        self.queue.schedule(stop.until_ms, lambda t: self._end(slot, stop))
        self._pause(now)

    def _end(self, slot: str, stop: Stop) -> None:
        if getattr(self, slot) is stop:
            setattr(self, slot, None)
            self.dirty = True

    def restart_plc(self, now: int, for_ms: int | None = None) -> None:
        """PLC restart: off for a few seconds, counters back to 0, the part in process is lost."""
        duration = for_ms if for_ms is not None else round(self.spec.plc_restart_s * 1000)
        self.begin(now, StateCode.OFF, 0, "PLC restart", duration, "restart")
        self.good_count = 0
        self.reject_count = 0
        self.dirty = True
        self.cycle_end_ms = None
        self.cycle_left_ms = None
        self._cycle_token += 1

    def set_calendar_stop(self, now: int, text: str | None) -> None:
        self.calendar_stop = text
        self.dirty = True
        if text:
            self._pause(now)

    def _pause(self, now: int) -> None:
        if self.cycle_end_ms is not None:
            self.cycle_left_ms = max(1, self.cycle_end_ms - now)
            self.cycle_end_ms = None
            self._cycle_token += 1

    # -- random stops ----------------------------------------------------------

    def start_random(self, now: int) -> None:
        if not self.spec.random:
            return
        if self.spec.mtbf_s:
            self._next_arrival(now, self.spec.mtbf_s, self._breakdown)
        if self.spec.micro_stops:
            self._next_arrival(now, self.spec.micro_stops.every_s, self._micro_stop)
        if self.spec.changeovers:
            self._next_arrival(now, self.spec.changeovers.every_s, self._changeover)

    def _next_arrival(self, now: int, mean_s: float, action: Callable[[int], None]) -> None:
        gap_ms = max(1, round(self._rng_stops.expovariate(1 / mean_s) * 1000))
        self.queue.schedule(now + gap_ms, action)

    def _breakdown(self, now: int) -> None:
        spec = self.spec
        assert spec.mtbf_s and spec.mttr_s
        self._next_arrival(now, spec.mtbf_s, self._breakdown)
        code = _weighted(self._rng_stops, spec.fault_reasons)
        duration = max(1000, round(self._rng_stops.expovariate(1 / spec.mttr_s) * 1000))
        if self.state is StateCode.RUNNING:
            self.begin(now, StateCode.FAULT, code, self._reason_text(code), duration, "breakdown")

    def _micro_stop(self, now: int) -> None:
        micro = self.spec.micro_stops
        assert micro is not None
        self._next_arrival(now, micro.every_s, self._micro_stop)
        code = _weighted(self._rng_stops, micro.reasons)
        duration = round(self._rng_stops.uniform(micro.min_s, micro.max_s) * 1000)
        if self.state is StateCode.RUNNING:
            self.begin(now, StateCode.FAULT, code, self._reason_text(code), duration, "micro")

    def _changeover(self, now: int) -> None:
        plan = self.spec.changeovers
        assert plan is not None
        self._next_arrival(now, plan.every_s, self._changeover)
        code = _weighted(self._rng_stops, plan.reasons)
        duration = round(self._rng_stops.uniform(plan.min_s, plan.max_s) * 1000)
        if self.state is StateCode.RUNNING:
            self.begin(now, StateCode.CHANGEOVER, code, self._reason_text(code), duration, "co")

    # -- material flow ---------------------------------------------------------

    def settle(self, now: int) -> bool:
        """Move parts if possible; True if a buffer changed (neighbours may move too)."""
        if not self.operating:
            self._pause(now)
            self._stop_waiting()
            return False
        moved = False
        if self.holding and (self.downstream is None or self.downstream.put()):
            self.holding = False
            self.dirty = True
            moved = self.downstream is not None
        idle = not self.holding and self.cycle_end_ms is None and self.cycle_left_ms is None
        if idle and (self.upstream is None or self.upstream.take()):
            moved = moved or self.upstream is not None
            self.cycle_ms = self._draw_cycle_ms()
            self.cycle_left_ms = self.cycle_ms
        if self.cycle_left_ms is not None and self.cycle_end_ms is None:
            self.dirty = True
            self.cycle_end_ms = now + self.cycle_left_ms
            self.cycle_left_ms = None
            token = self._cycle_token
            self.queue.schedule(self.cycle_end_ms, lambda t: self._cycle_done(t, token))
        if self.holding or self.cycle_end_ms is None:
            self._start_waiting(now)
        else:
            self._stop_waiting()
        return moved

    def _start_waiting(self, now: int) -> None:
        """Starved or blocked: shown as such once the wait has lasted `idle_report_s`."""
        if self._waiting:
            return
        self._waiting = True
        self._wait_token += 1
        delay = round(self.spec.idle_report_s * 1000)
        if delay <= 0:
            self._idle_shown = True
            self.dirty = True
            return
        token = self._wait_token
        self.queue.schedule(now + delay, lambda t: self._show_idle(token))

    def _show_idle(self, token: int) -> None:
        if token == self._wait_token and self._waiting:
            self._idle_shown = True
            self.dirty = True

    def _stop_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            self._wait_token += 1
            if self._idle_shown:
                self._idle_shown = False
                self.dirty = True

    def _draw_cycle_ms(self) -> int:
        spec = self.spec
        slowdown = spec.speed_loss
        if spec.random and spec.speed_loss > 0:
            slowdown = self._rng_cycle.gammavariate(4.0, spec.speed_loss / 4.0)
        return max(1, round(spec.ideal_cycle_time_s * (1 + slowdown) * self.slow_factor * 1000))

    def _cycle_done(self, now: int, token: int) -> None:
        if token != self._cycle_token:
            return
        self.cycle_end_ms = None
        self.dirty = True
        rate = self.spec.reject_rate if self.reject_override is None else self.reject_override
        if self.spec.random:
            good = self._rng_quality.random() >= rate
        else:
            self._reject_debt += rate
            good = self._reject_debt < 1 - 1e-9
            if not good:
                self._reject_debt -= 1
        wrap = self.spec.counter_max + 1
        if good:
            self.good_count = (self.good_count + 1) % wrap
            self.holding = True
        else:
            self.reject_count = (self.reject_count + 1) % wrap
        self._on_part(self.id, now, good)


_LABELS = {s: s.label for s in StateCode}


def _weighted(rng: random.Random, table: tuple[tuple[int, float], ...]) -> int:
    codes = [c for c, _ in table]
    return rng.choices(codes, weights=[w for _, w in table])[0]
