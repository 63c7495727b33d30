"""One MQTT v5 connection (paho-mqtt 2.x, QoS 1) driven from asyncio.

paho runs its network loop in its own thread; everything handed back to the caller
(`on_connected`, `on_message`) is delivered on the asyncio loop.

Every connection uses a fresh paho client with a clean start, like a Sparkplug edge node must:
whatever was in flight when a connection died is lost, never re-sent behind the next birth.
A scripted network loss (`drop`) disconnects with reason code 0x04 "Disconnect with Will
Message", so the broker publishes the will just as after a real connection loss; an
unexpected loss is followed by reconnect attempts every `retry_s` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

Will = tuple[str, bytes]


class MqttLinkError(ConnectionError):
    """The broker could not be reached or refused the connection."""


@dataclass
class LinkStats:
    published: int = 0
    dropped_offline: int = 0  # messages not sent because the link was down
    connects: int = 0


class MqttLink:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        on_connected: Callable[[], None],
        on_message: Callable[[str, bytes], None] | None = None,
        subscriptions: tuple[str, ...] = (),
        will: Callable[[], Will] | None = None,  # called before every connection
        keepalive: int = 30,
        retry_s: float = 2.0,
        protocol: str = "5",  # "3.1.1" for brokers without v5 (the demo's embedded one)
    ) -> None:
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"unknown MQTT protocol {protocol!r} (5 or 3.1.1)")
        self.protocol = protocol
        self.host = host
        self.port = port
        self.client_id = client_id
        self.online = False
        self.stats = LinkStats()
        self._on_connected = on_connected
        self._on_message = on_message
        self._subscriptions = subscriptions
        self._will = will
        self._keepalive = keepalive
        self._retry_s = retry_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Future[None] | None = None
        self._client: mqtt.Client | None = None
        self._wanted = False  # False during a scripted outage and after close
        self._lock = asyncio.Lock()  # connect / drop / resume / close one after the other
        self._retry: asyncio.Task[None] | None = None

    # -- lifecycle (asyncio side) ------------------------------------------------

    async def connect(self, within_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK; raise MqttLinkError if that does not happen."""
        self._loop = asyncio.get_running_loop()
        self._first = self._loop.create_future()
        async with self._lock:
            self._wanted = True
            self._open()
        try:
            await asyncio.wait_for(asyncio.shield(self._first), within_s)
        except TimeoutError:
            await self.close()
            raise MqttLinkError(f"no CONNACK from MQTT broker {self.host}:{self.port}") from None

    def go_offline(self) -> None:
        """Stop publishing from this instant; `drop` then cuts the connection."""
        self._wanted = False
        self.online = False

    async def drop(self) -> None:
        """Simulated network loss: the broker publishes our will; we stay away until `resume`."""
        async with self._lock:
            self.go_offline()
            await self._shut(ReasonCode(PacketTypes.DISCONNECT, identifier=4))

    async def resume(self) -> None:
        async with self._lock:
            if not self._wanted:
                self._wanted = True
                self._open()

    async def close(self, last: Sequence[Will] = (), within_s: float = 5.0) -> None:
        """Publish `last` (e.g. a Sparkplug NDEATH), wait for their PUBACKs, disconnect."""
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
        async with self._lock:
            client = self._client
            if self.online and client is not None and last:
                infos = [client.publish(topic, payload, qos=1) for topic, payload in last]
                await asyncio.to_thread(_wait_all, infos, within_s)
            self.go_offline()
            await self._shut(None)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> bool:
        """Queue one QoS 1 message; False (and counted) if the link is down."""
        client = self._client
        if not self.online or client is None:
            self.stats.dropped_offline += 1
            return False
        client.publish(topic, payload, qos=1, retain=retain)
        self.stats.published += 1
        return True

    def _open(self) -> None:
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.protocol == "5" else mqtt.MQTTv311,
            clean_session=None if self.protocol == "5" else True,
            reconnect_on_failure=False,  # a lost connection is replaced, not resumed
        )
        client.max_inflight_messages = 200
        client.reconnect_delay_set(min_delay=1, max_delay=int(max(1, self._retry_s)))
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        if self._will is not None:
            topic, payload = self._will()
            client.will_set(topic, payload, qos=1, retain=False)
        if self.protocol == "5":
            client.connect_async(self.host, self.port, keepalive=self._keepalive, clean_start=True)
        else:
            client.connect_async(self.host, self.port, keepalive=self._keepalive)
        client.loop_start()  # retries the first connect until it works
        self._client = client

    async def _shut(self, reason: ReasonCode | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            # v3.1.1 has no "disconnect with will": a scripted drop is a plain disconnect there.
            client.disconnect(reasoncode=reason if self.protocol == "5" else None)
            await asyncio.to_thread(client.loop_stop)

    async def _replace_lost(self, lost: mqtt.Client) -> None:
        await asyncio.to_thread(lost.loop_stop)
        await asyncio.sleep(self._retry_s)
        async with self._lock:
            if self._wanted and self._client is lost:
                log.warning("MQTT %s:%s: connection lost, reconnecting", self.host, self.port)
                self._open()

    # -- paho thread -------------------------------------------------------------

    def _paho_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%s refused: %s", self.host, self.port, reason_code)
            return
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._call(self._connected, client)

    def _paho_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call(self._disconnected, client)

    def _paho_message(self, client, userdata, message: Any) -> None:
        if self._on_message is not None:
            self._call(self._on_message, message.topic, bytes(message.payload))

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    # -- asyncio side of the callbacks -------------------------------------------

    def _connected(self, client: mqtt.Client) -> None:
        if client is not self._client or not self._wanted:
            return
        self.online = True
        self.stats.connects += 1
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self._on_connected()

    def _disconnected(self, client: mqtt.Client) -> None:
        if client is not self._client:
            return  # an old connection we closed ourselves
        self.online = False
        if self._wanted:
            self._retry = asyncio.get_running_loop().create_task(self._replace_lost(client))


def _wait_all(infos: list[mqtt.MQTTMessageInfo], within_s: float) -> None:
    for info in infos:
        try:
            info.wait_for_publish(within_s)
        except (RuntimeError, ValueError):
            return
