"""MQTT source (paho-mqtt 2.x): persistent v5 session, QoS 1, PUBACK only once spooled.

paho is driven from the event loop through its external-loop hooks (not
`loop_start`, which would reconnect on its own behind the supervisor's back).
When the queue is full the socket reader is paused, so a slow consumer pushes
back on the broker instead of growing memory. Each message is acknowledged
only after `emit` returned, i.e. after the samples are in the durable spool, so a
crash before that means redelivery, not loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.sources.base import (
    Emit,
    RateLimitedLog,
    SourceDisconnected,
    SourceStats,
    register,
)
from collector.sources.payload import FieldBinding, Rejected, decode, parse_json
from collector.sources.supervisor import close_gap
from linemon.config import LineConfig, MachineConfig, MqttSourceConfig, PlantConfig, resolve_secret
from linemon.model import Sample

log = logging.getLogger("linemon.source.mqtt")
QUEUE_SIZE = 10_000
BATCH = 2_000


@register("mqtt")
class MqttSource:
    def __init__(
        self,
        config: MqttSourceConfig,
        plant: PlantConfig,
        machines: list[tuple[LineConfig, MachineConfig]],
    ) -> None:
        self.config = config
        self.name = config.name
        self.stats = SourceStats()
        self.machines = [m.id for _, m in machines]
        self.bindings: dict[str, list[FieldBinding]] = {}
        for _, machine in machines:
            for signal, tag in machine.tags.items():
                assert tag.topic is not None  # checked when the config was loaded
                ts_field = tuple(tag.ts_field.split(".")) if tag.ts_field else None
                binding = FieldBinding(
                    machine.id, signal, tuple(tag.field.split(".")), ts_field, tag.type
                )
                self.bindings.setdefault(tag.topic, []).append(binding)
        self._last_seq: dict[str, tuple[int, datetime]] = {}
        self._log = RateLimitedLog(log)
        self._username = resolve_secret(config.username_env, f"sources[{self.name}].username_env")
        self._password = resolve_secret(config.password_env, f"sources[{self.name}].password_env")

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()  # bounded by pausing reads
        session = _Session(self, loop, queue)
        try:
            await session.connect(timeout_s=10.0)
            self.stats.connected = True
            close_gap(self, datetime.now(UTC))
            log.info("source %s: connected to %s:%s", self.name, self.config.host,
                     self.config.port)
            while True:
                first = await session.next_message()
                messages = [first]
                while len(messages) < BATCH and not queue.empty():
                    messages.append(queue.get_nowait())
                samples = self._decode_all(messages)
                if samples:
                    await emit(samples)
                    self.stats.emitted += len(samples)
                for message in messages:
                    session.client.ack(message.mid, message.qos)
        finally:
            await session.close()

    def _decode_all(self, messages: list[mqtt.MQTTMessage]) -> list[Sample]:
        received = datetime.now(UTC)
        samples: list[Sample] = []
        for message in messages:
            self.stats.received += 1
            try:
                samples += self._decode(message, received)
            except Rejected as err:
                self.stats.rejected[err.reason] += 1
                self._log.warning(err.reason, "source %s: rejected message on %s: %s",
                                  self.name, message.topic, err)
        return samples

    def _decode(self, message: mqtt.MQTTMessage, received: datetime) -> list[Sample]:
        topic = message.topic
        bindings = self.bindings.get(topic)
        if bindings is None:
            raise Rejected("unknown_topic", topic)
        if len(message.payload) > self.config.max_payload_bytes:
            raise Rejected("oversize", f"{len(message.payload)} bytes")
        document = parse_json(message.payload)
        samples = decode(document, bindings, received, self.name)
        if isinstance(document, dict) and self._is_duplicate(topic, document, samples[0]):
            self.stats.duplicates += 1
            return []
        for sample in samples:
            self.stats.last_message_at[sample.machine] = received
        return samples

    def _is_duplicate(self, topic: str, document: dict[str, Any], sample: Sample) -> bool:
        """A redelivered message repeats its seq and timestamp; a restarted publisher does not."""
        seq = document.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return False
        last = self._last_seq.get(topic)
        if last is not None and seq <= last[0] and sample.source_ts <= last[1]:
            return True
        self._last_seq[topic] = (seq, sample.source_ts)
        return False


class _Session:
    """One paho connection driven from the asyncio loop (paho's external-loop hooks).

    Everything paho does after the TCP connect runs on the event loop thread, so
    acks need no locking. When the queue passes its high-water mark the socket
    reader is paused: the broker holds the rest, memory stays bounded.
    """

    def __init__(self, source: MqttSource, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue[mqtt.MQTTMessage]) -> None:
        cfg = source.config
        self.source, self.loop, self.queue = source, loop, queue
        self.lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reason = "connection lost"
        self._sock: Any = None
        self._paused = False
        self._misc: asyncio.Task[None] | None = None
        self.v5 = cfg.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"linemon-{cfg.name}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False,  # v3.1.1: keep the session on the broker
            manual_ack=True,
        )
        if source._username is not None:
            self.client.username_pw_set(source._username, source._password)
        if cfg.tls:
            self.client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write

    async def connect(self, timeout_s: float) -> None:
        cfg = self.source.config
        kwargs: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        try:
            # The TCP connect may block (DNS, SYN timeout): keep it off the event loop.
            await asyncio.to_thread(self.client.connect, cfg.host, cfg.port, 30, **kwargs)
        except OSError as err:
            raise SourceDisconnected(f"cannot reach {cfg.host}:{cfg.port}: {err}") from err
        self._misc = asyncio.create_task(self._housekeeping())
        try:
            await asyncio.wait_for(_first_of(self.connected, self.lost), timeout_s)
        except TimeoutError:
            raise SourceDisconnected("no CONNACK from the broker") from None
        if self.lost.is_set():
            raise SourceDisconnected(self.reason)

    async def next_message(self) -> mqtt.MQTTMessage:
        if self._paused and self.queue.qsize() < QUEUE_SIZE // 2:
            self._paused = False
            if self._sock is not None:
                self.loop.add_reader(self._sock, self._read)
        if not self.queue.empty():
            return self.queue.get_nowait()
        get = asyncio.ensure_future(self.queue.get())
        lost = asyncio.ensure_future(self.lost.wait())
        done, _ = await asyncio.wait({get, lost}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            lost.cancel()
            return get.result()
        get.cancel()
        raise SourceDisconnected(self.reason)

    async def close(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self._forget_socket()

    async def _housekeeping(self) -> None:
        """Keepalive pings and timeout detection, which paho leaves to the caller's loop."""
        while not self.lost.is_set():
            await asyncio.sleep(1.0)
            rc = self.client.loop_misc()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._signal_lost(f"keepalive failed: {mqtt.error_string(rc)}")

    # --- paho callbacks (all on the event loop, except the first socket open) ----------

    def _read(self) -> None:
        rc = self.client.loop_read(max_packets=100)
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._signal_lost(f"read failed: {mqtt.error_string(rc)}")

    def _write(self) -> None:
        rc = self.client.loop_write()
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._signal_lost(f"write failed: {mqtt.error_string(rc)}")

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            # Nagle would add up to 40 ms to small PUBACKs and publishes.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop.call_soon_threadsafe(self._attach, sock)

    def _attach(self, sock: Any) -> None:
        self._sock = sock
        self.loop.add_reader(sock, self._read)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        self._forget_socket()
        self._signal_lost(self.reason)

    def _forget_socket(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock)
            self.loop.remove_writer(self._sock)
            self._sock = None

    def _on_register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.add_writer, sock, self._write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.remove_writer, sock)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._signal_lost(f"broker refused the connection: {reason}")
            return
        cfg = self.source.config
        for topic in self.source.bindings:
            full = f"$share/{cfg.shared_group}/{topic}" if cfg.shared_group else topic
            client.subscribe(full, qos=cfg.qos)
        self.connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _props: Any) -> None:
        self._signal_lost(f"disconnected: {reason}")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.queue.put_nowait(message)
        if not self._paused and self.queue.qsize() >= QUEUE_SIZE and self._sock is not None:
            self._paused = True
            self.loop.remove_reader(self._sock)

    def _signal_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
