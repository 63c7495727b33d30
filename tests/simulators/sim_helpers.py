"""Helpers shared by the simulator tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from tests.support.plants import eventually


def wait_for(predicate: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `within` seconds."""
    return eventually(predicate, within, what or str(predicate))


class Broker(Protocol):
    """What the recorder needs of a broker (the shared Mosquitto fixture has it)."""

    host: str
    port: int


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received: float


class MqttRecorder:
    """A plain paho subscriber that keeps every message it receives, in order."""

    def __init__(self, broker: Broker, topics: tuple[str, ...]) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("MQTT recorder could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload), time.monotonic()))

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.snapshot() if m.topic == topic]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def scripted_dict(**overrides: Any) -> dict[str, Any]:
    """A small fully scripted line (no random stops): press-1 -> weld-1 (OPC-UA) ->
    paint-1 -> pack-1 (MQTT), 20 minutes from 06:00 Berlin, with a short break."""
    machines = [
        {"id": "press-1", "protocol": "opcua", "ideal_cycle_time_s": 2.0, "reject_rate": 0.02},
        {"id": "weld-1", "protocol": "opcua", "ideal_cycle_time_s": 2.4},
        {"id": "paint-1", "protocol": "mqtt", "ideal_cycle_time_s": 2.2, "reject_rate": 0.05},
        {"id": "pack-1", "protocol": "mqtt", "ideal_cycle_time_s": 2.0},
    ]
    for machine in machines:
        machine["buffer_capacity"] = 6
    data: dict[str, Any] = {
        "name": "scripted",
        "site": "test-plant",
        "seed": 3,
        "start": "2024-03-04T05:00:00Z",
        "duration": "20m",
        "random": False,
        "process_interval": "30s",
        "reasons": {5: "Die change", 17: "Jam", 23: "Tool break", 31: "Material shortage"},
        "calendar": {
            "timezone": "Europe/Berlin",
            "shifts": [
                {
                    "name": "early",
                    "start": "06:00",
                    "end": "14:00",
                    "breaks": [{"start": "06:12", "end": "06:14"}],
                }
            ],
        },
        "lines": [{"id": "line-1", "name": "Line 1", "machines": machines}],
        "timeline": [
            "at 00:02 press-1 down reason=23 for 3m",
            "at 00:03 paint-1 rejects 20% for 2m",
            "at 00:04 pack-1 down reason=jam for 20s",
            "at 00:08 paint-1 plc-restart",
            "at 00:10 weld-1 changeover for 1m code=5",
        ],
    }
    data.update(overrides)
    return data
