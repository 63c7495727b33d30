"""One MQTT connection (paho-mqtt 2.x) driven from the asyncio loop through paho's external-loop
hooks: no paho thread, no paho reconnect behind the supervisor's back.

paho talks through a BufferedSocket (mqtt_socket.py): one recv() feeds many packets and the
PUBACKs of a batch leave in one send().

Everything paho does after the TCP connect runs on the event loop thread, so acks need no
locking. Messages are acknowledged only when the caller says so (manual ack), i.e. after
they are spooled. When the queue passes its high-water mark the socket reader is paused: the
broker holds the rest and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections import deque
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.sources.base import SourceConfigError, SourceDisconnected
from collector.sources.mqtt_socket import BufferedClient, BufferedSocket
from linemon.config import MqttSourceConfig

QUEUE_SIZE = 10_000
# Unacknowledged messages the broker may have in flight to linemon: 25 ms at 10,000 msg/s,
# more than a paced spool commit (COMMIT_EVERY_S plus the fsync) holds back.
RECEIVE_MAXIMUM = 256
PACKETS_PER_READ = 256  # then the event loop gets a turn (~2 ms of packets)
_AUTH_REFUSED = {134, 135}  # Bad user name or password, Not authorized (v3 codes 4, 5 map here)


class MqttConnection:
    def __init__(self, config: MqttSourceConfig, subscriptions: list[str],
                 username: str | None, password: str | None) -> None:
        self.config = config
        self.subscriptions = subscriptions
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # A deque, not an asyncio.Queue: 0.6 µs a message less. Bounded by pausing the reads.
        self.queue: deque[mqtt.MQTTMessage] = deque()
        # next_batch waiting on an empty queue: done by news, a lost connection or `until`.
        self._wakeup: asyncio.Future[None] | None = None
        self.lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.session_present = False
        self.reason = "connection lost"
        self._refused: Exception | None = None
        self._sock: BufferedSocket | None = None
        self._paused = False
        self._write_due = False
        self._misc: asyncio.Task[None] | None = None
        self.v5 = config.protocol == "5"
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"linemon-{config.name}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            # v3.1.1 has no expiry: keep the session on the broker unless none is wanted.
            clean_session=None if self.v5 else config.session_expiry_s == 0,
            manual_ack=True,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if config.tls:
            try:
                self.client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None)
            except (OSError, ssl.SSLError) as err:
                raise SourceConfigError(f"TLS: cannot load {config.ca_file}: {err}") from err
        client = self.client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publishes = self._on_messages
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write

    async def connect(self, timeout_s: float) -> None:
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = RECEIVE_MAXIMUM  # bounds what a reconnect redelivers
            kwargs = {"clean_start": False, "properties": props}
        where = f"{cfg.host}:{cfg.port}"
        try:
            # The TCP connect and TLS handshake block (DNS, SYN timeout): off the event loop.
            await asyncio.to_thread(self.client.connect, cfg.host, cfg.port, 30, **kwargs)
        except ssl.SSLCertVerificationError as err:
            raise SourceConfigError(f"TLS: the broker at {where} is not trusted "
                                    f"({err.verify_message}); check ca_file") from err
        except (OSError, ssl.SSLError) as err:
            raise SourceDisconnected(f"cannot reach {where}: {err}") from err
        self._misc = asyncio.create_task(self._housekeeping())
        try:
            await asyncio.wait_for(_first_of(self.connected, self.lost), timeout_s)
        except TimeoutError:
            raise SourceDisconnected(f"no CONNACK from {where}") from None
        if self._refused is not None:
            raise self._refused
        if self.lost.is_set():
            raise SourceDisconnected(self.reason)

    async def next_batch(self, limit: int, until: asyncio.Future[Any] | None = None
                         ) -> list[mqtt.MQTTMessage]:
        """Everything received so far (at least one message), up to `limit`; or an empty list
        when `until` is done first (the caller has something else to do).

        Messages that arrived before the connection dropped still come out (they may be
        spooled; their acks are lost and the broker redelivers them): only an empty queue
        raises SourceDisconnected.
        """
        queue = self.queue
        if self._paused and len(queue) < QUEUE_SIZE // 2:
            self._paused = False
            if self._sock is not None:
                self.loop.add_reader(self._sock, self._read)
                self.loop.call_soon(self._read)  # bytes may wait in the socket's buffer
        while not queue:
            if until is not None and until.done():
                return []
            if self.lost.is_set():
                raise SourceDisconnected(self.reason)
            # One future, not a task per thing waited for: this wait comes hundreds of times
            # a second (~25 µs each with asyncio.wait over three tasks, measured).
            wakeup = self._wakeup = self.loop.create_future()
            # This wait's own callback: a future runs its callbacks a loop turn after it is
            # done, when the next wait may have begun.
            wake = partial(_set_done, wakeup)
            if until is not None:
                until.add_done_callback(wake)
            try:
                await wakeup
            finally:
                self._wakeup = None
                if until is not None:
                    until.remove_done_callback(wake)
        if len(queue) <= limit:
            batch = list(queue)
            queue.clear()
            return batch
        return [queue.popleft() for _ in range(limit)]

    def ack(self, messages: list[mqtt.MQTTMessage]) -> None:
        self.client.puback_all([m.mid for m in messages if m.qos == 1])
        for message in messages:
            if message.qos == 2:
                self.client.ack(message.mid, 2)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.client.publish(topic, payload, qos=qos)

    async def close(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        with contextlib.suppress(Exception):
            self.client.disconnect()  # keeps the session: it expires after session_expiry_s
            self.client.loop_write()
            if self._sock is not None:
                self._sock.flush()
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
        # paho's loop_read() takes one packet per call whatever max_packets says (and makes
        # the recv() when the buffer is empty); the PUBLISH packets behind it in what that
        # recv() brought go to the queue in one hand-off.
        client = self.client
        budget = PACKETS_PER_READ
        while budget > 0:
            rc = client.loop_read()
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                self._signal_lost(f"read failed: {mqtt.error_string(rc)}")
                return
            if self._paused or self._sock is None:
                return
            budget -= 1 + client.take_publishes(budget - 1)
            sock = self._sock
            if self._paused or sock is None or not sock.buffered():
                return
        self.loop.call_soon(self._read)

    def _write(self) -> None:
        self._write_due = False
        sock = self._sock
        if sock is None:
            return
        rc = self.client.loop_write()
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._signal_lost(f"write failed: {mqtt.error_string(rc)}")
            return
        try:
            done = sock.flush()
        except OSError as err:
            self._signal_lost(f"write failed: {err}")
            return
        if done:
            self.loop.remove_writer(sock)
        else:
            self.loop.add_writer(sock, self._write)  # the kernel's buffer is full: wait

    def _schedule_write(self) -> None:
        # Everything paho queues during this loop turn (a batch of PUBACKs) leaves in one send.
        if not self._write_due and self._sock is not None:
            self._write_due = True
            self.loop.call_soon(self._write)

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        raw = sock.sock if isinstance(sock, BufferedSocket) else sock
        if isinstance(raw, socket.socket):
            # Nagle would add up to 40 ms to small PUBACKs and publishes.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop.call_soon_threadsafe(self._attach, sock)

    def _attach(self, sock: BufferedSocket) -> None:
        self._sock = sock
        self.loop.add_reader(sock, self._read)
        self._schedule_write()  # CONNECT was queued before the socket was ours

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        self._forget_socket()
        self._signal_lost(self.reason)

    def _forget_socket(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock)
            self.loop.remove_writer(self._sock)
            self._sock = None

    def _on_register_write(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            self._schedule_write()
        else:  # paho's connect() runs in a worker thread
            self.loop.call_soon_threadsafe(self._schedule_write)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any,
                    _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            where = f"{self.config.host}:{self.config.port}"
            if getattr(reason, "value", None) in _AUTH_REFUSED:
                self._refused = SourceConfigError(
                    f"broker {where} refused the login: {reason} (check username_env and "
                    "password_env)")
            self._signal_lost(f"broker {where} refused the connection: {reason}")
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        cfg = self.config
        for topic in self.subscriptions:
            full = f"$share/{cfg.shared_group}/{topic}" if cfg.shared_group else topic
            client.subscribe(full, qos=cfg.qos)
        self.connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _props: Any) -> None:
        self._signal_lost(f"disconnected: {reason}")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_messages([message])

    def _on_messages(self, messages: list[mqtt.MQTTMessage]) -> None:
        self.queue.extend(messages)
        if self._wakeup is not None:
            self._wake()
        if not self._paused and len(self.queue) >= QUEUE_SIZE and self._sock is not None:
            self._paused = True
            self.loop.remove_reader(self._sock)

    def _signal_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            _set_done(self._wakeup)


def _set_done(future: asyncio.Future[None], _cause: object = None) -> None:
    if not future.done():
        future.set_result(None)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
