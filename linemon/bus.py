"""One process's connection to the scale-out bus: the same asyncio-driven paho session the MQTT
collectors use, kept up by the same backoff, with a will and retained publishing.

Messages are handed to `on_message` in arrival order on the event loop, with the broker's
retain flag: set only for a retained message replayed on subscribe, i.e. possibly old news.
A publish while the broker is away is counted and skipped: what goes out on the bus is
either retained state republished every second or a live notification whose facts are in
the historian.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.sources.base import SourceConfigError, SourceDisconnected
from collector.sources.mqtt_session import MqttConnection
from collector.sources.supervisor import Backoff
from linemon.config import BusConfig, MqttSourceConfig, resolve_secret

log = logging.getLogger("linemon.bus")
BATCH = 500


@dataclass
class BusStats:
    connected: bool = False
    connects: int = 0
    received: int = 0
    published: int = 0
    unsent: int = 0  # publishes skipped while disconnected
    rejected: int = 0  # messages this process could not read
    last_error: str | None = None
    rejected_by_topic: dict[str, int] = field(default_factory=dict)


class Bus:
    def __init__(self, config: BusConfig, client_id: str, *, subscriptions: list[str],
                 on_message: Callable[[str, bytes, bool], None],
                 will: tuple[str, bytes] | None = None,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.config = config
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.will = will
        self.on_connect = on_connect
        self.stats = BusStats()
        self.connected = asyncio.Event()
        self._session: MqttConnection | None = None
        self._username = resolve_secret(config.username_env, "bus.username_env")
        self._password = resolve_secret(config.password_env, "bus.password_env")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> bool:
        session = self._session
        if session is None or not self.connected.is_set():
            self.stats.unsent += 1
            return False
        session.client.publish(topic, payload, qos=qos, retain=retain)
        self.stats.published += 1
        return True

    def reject(self, topic: str, why: str) -> None:
        self.stats.rejected += 1
        n = self.stats.rejected_by_topic.get(topic, 0) + 1
        self.stats.rejected_by_topic[topic] = n
        if n == 1 or n % 1000 == 0:  # one bad publisher must not flood the log
            log.warning("bus: cannot read a message on %s (%d so far): %s", topic, n, why)

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled; a refused login ends it."""
        backoff = Backoff()
        while True:
            try:
                await self._session_once()
            except SourceConfigError as err:
                self.stats.last_error = str(err)
                log.error("bus: %s; giving up", err)
                raise
            except SourceDisconnected as err:
                self.stats.last_error = str(err)
            finally:
                if self.connected.is_set():  # it was up: the next try starts from the shortest wait
                    backoff.reset()
                self._down()
            delay = backoff.next()
            log.warning("bus: %s; reconnecting in %.1fs", self.stats.last_error, delay)
            await asyncio.sleep(delay)

    async def _session_once(self) -> None:
        cfg = self.config
        source = MqttSourceConfig(
            kind="mqtt", name="bus", host=cfg.host, port=cfg.port, client_id=self.client_id,
            protocol=cfg.protocol, qos=1, session_expiry_s=0, tls=cfg.tls, ca_file=cfg.ca_file)
        session = MqttConnection(source, self.subscriptions, self._username, self._password)
        if self.will is not None:
            session.client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        self._session = session
        try:
            await session.connect(timeout_s=10.0)
            self.stats.connected = True
            self.stats.connects += 1
            self.connected.set()
            log.info("bus: connected to %s:%s as %s", cfg.host, cfg.port, self.client_id)
            if self.on_connect is not None:
                self.on_connect()
            while True:
                messages = await session.next_batch(BATCH)
                for message in messages:
                    self.stats.received += 1
                    try:
                        self.on_message(message.topic, message.payload, bool(message.retain))
                    except Exception as err:  # a bad message must not end the session
                        self.reject(message.topic, f"{type(err).__name__}: {err}")
                session.ack(messages)
        finally:
            with contextlib.suppress(Exception):
                await session.close()

    def _down(self) -> None:
        self.stats.connected = False
        self.connected.clear()
        self._session = None

    async def close(self) -> None:
        """Say goodbye cleanly (callers publish their offline status first)."""
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
