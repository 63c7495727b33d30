"""JSON over MQTT, one topic per signal or one object per machine.

json-per-signal:  {prefix}/{line}/{machine}/{signal}  {"value": 4, "ts": "...Z", "seq": 17}
json-per-machine: {prefix}/{line}/{machine}  {"ts": "...Z", "seq": 18, "state_code": 4, ...}

`seq` is per publisher and strictly increasing. After every (re)connect the current value of
every signal is published again, stamped with the time it last changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from simulators.mqtt.link import MqttLink
from simulators.mqtt.sink import MqttSink
from simulators.signals import SIGNAL_NAMES, Change, Value, iso_ms

JSON_MODES = ("json-per-signal", "json-per-machine")


class JsonPublisher(MqttSink):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        machines: Mapping[str, str],
        snapshot: Iterable[Change],
        mode: str = "json-per-signal",
        prefix: str = "plant",
        retain: bool = False,
        client_id: str = "linemon-simulator",
        protocol: str = "5",
    ) -> None:
        if mode not in JSON_MODES:
            raise ValueError(f"unknown JSON mode {mode!r} (one of {', '.join(JSON_MODES)})")
        super().__init__(machines, snapshot)
        self.mode = mode
        self.prefix = prefix.rstrip("/")
        self.retain = retain
        self.seq = 0
        self.mqtt = MqttLink(host, port, client_id, on_connected=self.birth, protocol=protocol)

    def links(self) -> list[MqttLink]:
        return [self.mqtt]

    def topic(self, machine: str, signal: str | None = None) -> str:
        base = f"{self.prefix}/{self.machines[machine]}/{machine}"
        return base if signal is None else f"{base}/{signal}"

    def send(self, t_ms: int, changes: list[Change]) -> None:
        if self.mode == "json-per-signal":
            for c in changes:
                self._signal(c.machine, c.signal, c.value, c.t_ms)
        else:
            for machine in dict.fromkeys(c.machine for c in changes):
                self._machine(machine, t_ms)

    def birth(self) -> None:
        """Everything we know, right after (re)connecting."""
        for machine, signals in self.mirror.items():
            if not signals:
                continue
            if self.mode == "json-per-signal":
                for signal in SIGNAL_NAMES:
                    if signal in signals:
                        value, t_ms = signals[signal]
                        self._signal(machine, signal, value, t_ms)
            else:
                self._machine(machine, max(t for _, t in signals.values()))

    def _signal(self, machine: str, signal: str, value: Value, t_ms: int) -> None:
        self.seq += 1
        payload = {"value": value, "ts": iso_ms(t_ms), "seq": self.seq}
        self.mqtt.publish(self.topic(machine, signal), _dumps(payload), self.retain)

    def _machine(self, machine: str, t_ms: int) -> None:
        self.seq += 1
        payload: dict[str, Value] = {"ts": iso_ms(t_ms), "seq": self.seq}
        for signal in SIGNAL_NAMES:
            if signal in self.mirror[machine]:
                payload[signal] = self.mirror[machine][signal][0]
        self.mqtt.publish(self.topic(machine), _dumps(payload), self.retain)


def _dumps(payload: Mapping[str, Value]) -> str:
    return json.dumps(payload, separators=(",", ":"))
