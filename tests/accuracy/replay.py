"""Drive the engine from the pure simulation, protocol-free and deterministic.

The simulation's tag changes become `Sample`s stamped with simulated time; the engine gets
them in order and a clock tick every simulated second, exactly as `Linemon` would feed it
from its sources with the simulator's clock. Nothing here touches a network or a wall clock,
so a whole 8-hour shift replays in seconds and gives the same answer every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from linemon.config import PlantConfig
from linemon.model import Event, Sample
from rules.engine import Engine
from simulators import Scenario, Simulation
from simulators.signals import SIGNAL_BY_NAME, Change, to_datetime, to_ms

# The simulator's tag names -> linemon's normalized signals. The `state` string tag carries
# the same information as `state_code` and is not mapped (as in the demo config).
SIGNALS = {"state_code": "state", "fault_code": "fault_code", "good_count": "good_count",
           "reject_count": "reject_count", "speed": "speed", "temperature": "temperature",
           "pressure": "pressure"}
NAMESPACE = "urn:linemon:simulator"


def plant_config(scenario: Scenario, *, opcua_endpoint: str = "opc.tcp://127.0.0.1:4840",
                 mqtt_port: int = 1883, mqtt_prefix: str | None = None,
                 machine_extra: dict[str, Any] | None = None, **top: Any) -> PlantConfig:
    """The linemon config an integrator would write for this simulated plant."""
    cal = scenario.calendar
    calendar = {"shifts": [{"name": "all", "start": "00:00", "end": "00:00"}]}
    if cal is not None:
        calendar = {"shifts": [
            {"name": s.name, "start": s.start.strftime("%H:%M"), "end": s.end.strftime("%H:%M"),
             "breaks": [{"name": b.name, "start": b.start.strftime("%H:%M"),
                         "end": b.end.strftime("%H:%M")} for b in s.breaks]}
            for s in cal.shifts]}
    prefix = mqtt_prefix or scenario.mqtt.prefix
    per_machine = scenario.mqtt.mode == "json-per-machine"
    lines = []
    for line in scenario.lines:
        machines = []
        for m in line.machines:
            tags: dict[str, dict[str, Any]] = {}
            for sim_name, signal in SIGNALS.items():
                if m.protocol == "opcua":
                    node = f"nsu={NAMESPACE};s={line.id}.{m.id}.{SIGNAL_BY_NAME[sim_name].tag}"
                    tags[signal] = {"node": node}
                elif per_machine:
                    tags[signal] = {"topic": f"{prefix}/{line.id}/{m.id}", "field": sim_name}
                else:
                    tags[signal] = {"topic": f"{prefix}/{line.id}/{m.id}/{sim_name}"}
            machine: dict[str, Any] = {
                "id": m.id, "source": "plc" if m.protocol == "opcua" else "gateway",
                "ideal_cycle_time_s": m.ideal_cycle_time_s, "tags": tags,
                "micro_stop_threshold_s": scenario.micro_stop_threshold_s,
                "counter_max": m.counter_max,
            }
            machine.update((machine_extra or {}).get(m.id, {}))
            machines.append(machine)
        lines.append({"id": line.id, "name": line.name or line.id, "machines": machines})
    data: dict[str, Any] = {
        "site": {"name": scenario.site, "timezone": cal.timezone if cal else "UTC"},
        "calendar": calendar,
        "sources": [
            {"kind": "opcua", "name": "plc", "endpoint": opcua_endpoint,
             "publishing_interval_ms": 100},
            {"kind": "mqtt", "name": "gateway", "port": mqtt_port},
        ],
        "reason_codes": {str(code): text for code, text in scenario.reasons.items()},
        "lines": lines,
    }
    data.update(top)
    return PlantConfig.model_validate(data)


@dataclass
class Replay:
    """One scenario run through the engine, one simulated second at a time."""

    scenario: Scenario
    start: datetime
    end: datetime
    config: PlantConfig
    # (t_ms) -> True while the MQTT link is down: MQTT machines' changes are then lost
    mqtt_down: Callable[[int], bool] | None = None
    on_second: Callable[[Replay, datetime, list[Event]], None] | None = None
    # linemon starts watching here (the simulation runs on its own before): a short look
    # at one moment of a long scenario without replaying all of it through the engine
    engine_from: datetime | None = None
    tick_s: float = 1.0  # the engine's clock tick, in simulated seconds
    events: list[Event] = field(default_factory=list)
    samples: int = 0

    def __post_init__(self) -> None:
        self.sim = Simulation(self.scenario, start=self.start, end=self.end)
        begin = self.start
        if self.engine_from is not None:
            self.sim.advance_to(to_ms(self.engine_from))
            begin = self.engine_from
        self.engine = Engine(self.config, begin)
        self._pending: list[Change] = []
        self.sim.sinks.append(self)
        self._mqtt = {m.id for _, m in self.scenario.machines() if m.protocol == "mqtt"}
        self._was_down = False
        self.events += self._feed(self.sim.snapshot())  # what a client reads on connecting

    # the simulation's Sink protocol
    def publish(self, t_ms: int, changes: list[Change]) -> None:
        self._pending.extend(changes)

    def link(self, t_ms: int, up: bool) -> None:
        pass

    def run(self, until: datetime | None = None) -> Replay:
        end_ms = to_ms(until or self.end)
        t_ms = self.sim.now_ms
        step = round(self.tick_s * 1000)
        while t_ms < end_ms:
            t_ms = min(t_ms + step, end_ms)
            self.sim.advance_to(t_ms)
            down = self.mqtt_down is not None and self.mqtt_down(t_ms)
            changes, self._pending = self._pending, []
            if down:
                changes = [c for c in changes if c.machine not in self._mqtt]
            elif self._was_down:  # reconnected: every current value again (the sim's rule)
                changes = [c for c in self.sim.snapshot() if c.machine in self._mqtt] + changes
                changes.sort(key=lambda c: c.t_ms)
            self._was_down = down
            new = self._feed(changes)
            now = to_datetime(t_ms)
            new += self.engine.on_tick(now)
            self.events += new
            if self.on_second is not None:
                self.on_second(self, now, new)
        return self

    def _feed(self, changes: list[Change]) -> list[Event]:
        out: list[Event] = []
        for c in changes:
            signal = SIGNALS.get(c.signal)
            if signal is None:
                continue
            at = to_datetime(c.t_ms)
            self.samples += 1
            out += self.engine.on_sample(Sample(c.machine, signal, c.value, at, at, source="sim"),
                                         at)
        return out

    def truth(self) -> dict[str, Any]:
        return self.sim.build_truth()


def scenario_window(scenario: Scenario, hours: float | None = None,
                    default_start: datetime = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)
                    ) -> tuple[datetime, datetime]:
    start = scenario.start or default_start
    duration = hours * 3600 if hours is not None else scenario.duration_s
    assert duration is not None
    return start, start + timedelta(seconds=duration)
