"""What the collector tests share: plant configs, a recording `emit`, a supervised source, and a
sequence-numbered MQTT publisher with its own persistent session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.historian.historian import Historian
from collector.sources.base import Source, build_sources
from collector.sources.supervisor import Backoff, supervise
from linemon.config import PlantConfig, parse_config
from linemon.model import Quality, Sample
from tests.support.plants import ALL_DAY, DEMO_CONFIG


def plant_config(sources: list[dict[str, Any]], machines: list[dict[str, Any]],
                 data_dir: Path | None = None) -> PlantConfig:
    """A one-line plant with these sources and machines, validated like a YAML file."""
    data: dict[str, Any] = {
        "site": {"name": "test plant", "timezone": "UTC"},
        "calendar": ALL_DAY,
        "sources": sources,
        "lines": [{"id": "line-1", "machines": machines}],
    }
    if data_dir is not None:
        data["historian"] = {
            "backend": {"kind": "sqlite", "path": str(data_dir / "history.sqlite")},
            "spool": {"path": str(data_dir / "spool.sqlite")},
        }
    return parse_config(yaml.safe_dump(data), source="<test>")


def source_named(config: PlantConfig, name: str) -> Source:
    return next(s for s in build_sources(config) if s.name == name)


class Recorder:
    """The `emit` end of a source: spools for real when given a historian, and keeps a copy."""

    def __init__(self, historian: Historian | None = None) -> None:
        self.historian = historian
        self.samples: list[Sample] = []
        self.gate = asyncio.Event()  # clear it to play a slow consumer
        self.gate.set()

    async def __call__(self, samples: list[Sample]) -> None:
        await self.gate.wait()
        if self.historian is not None:
            await self.historian.write_samples(samples)
        self.samples.extend(samples)

    def good(self, machine: str, signal: str) -> list[Sample]:
        return [s for s in self.samples if s.machine == machine and s.signal == signal
                and s.quality is Quality.GOOD]

    def values(self, machine: str, signal: str) -> list[Any]:
        return [s.value for s in self.good(machine, signal)]

    def bad(self, machine: str | None = None) -> list[Sample]:
        return [s for s in self.samples
                if s.quality is Quality.BAD and machine in (None, s.machine)]


@contextlib.asynccontextmanager
async def supervised(source: Source, emit: Callable[[list[Sample]], Any],
                     backoff: Backoff | None = None) -> AsyncIterator[list[tuple[str, str]]]:
    """Run `source` under the supervisor; yields the gaps reported to the engine side."""
    gaps: list[tuple[str, str]] = []
    task = asyncio.create_task(supervise(
        source, emit, on_gap=lambda name, _at, why: gaps.append((name, why)),
        backoff=backoff or Backoff(initial_s=0.2, cap_s=2.0)))
    try:
        yield gaps
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_last_us = 0


def stream_payload(seq: int) -> bytes:
    """One message of a stream; its timestamp (µs) is unique, as the history keys samples on
    tags + timestamp: two values of a tag stamped in the same millisecond are one point."""
    global _last_us
    _last_us = max(time.time_ns() // 1000, _last_us + 1)
    ts = datetime.fromtimestamp(_last_us // 10**6, UTC).replace(microsecond=_last_us % 10**6)
    ts = ts.isoformat()
    return json.dumps({"value": seq, "seq": seq, "ts": ts}).encode()


@dataclass
class SeqPublisher:
    """A plain paho client publishing `{"value": n, "seq": n, "ts": ...}` at a steady rate.

    Its own persistent session and in-memory queue (paho keeps every QoS 1 message until
    its PUBACK and re-sends it after a reconnect), so the publisher side loses nothing
    while the broker is down.
    """

    port: int
    topic: str
    rate: float = 500.0
    client_id: str = "seq-publisher"
    published: int = 0
    # Message ids sent and acknowledged. No lock: one shared by publish() and on_publish
    # deadlocks against paho's own mutexes. Ids are unique while fewer than 65535 are sent.
    _sent: list[int] = field(default_factory=list)
    _acked: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(0.1, 0.5)
        client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", self.port, keepalive=10, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        self._thread = threading.Thread(target=self._publish_loop, daemon=True)
        self._thread.start()

    def _publish_loop(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.published < due:
                seq = self.published + 1
                assert seq < 65_000, "message ids would repeat"
                self._sent.append(self.client.publish(self.topic, stream_payload(seq), qos=1).mid)
                self.published = seq
            time.sleep(0.002)

    @property
    def acked(self) -> int:
        acked = self._acked
        return sum(1 for mid in list(self._sent) if mid in acked)

    def stop_publishing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def close(self) -> None:
        self.stop_publishing()
        self.client.disconnect()
        self.client.loop_stop()


def utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def demo_machines(source: str) -> list[dict[str, Any]]:
    """The demo plant's machines read by `source` (plc-line1: OPC-UA, gateway-line1: MQTT)."""
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    return [m for line in demo["lines"] for m in line["machines"] if m["source"] == source]
