"""The socket paho-mqtt talks through (buffered reads, coalesced writes) and a cheaper PUBLISH.

paho reads every packet with at least three `recv()` calls (the command byte, each byte of
the remaining length, then the body) and writes every packet, each PUBACK included, with a
`send()` of its own. At thousands of small messages a second those system calls cost more
than the decoding itself. `BufferedSocket` serves paho's small reads from one `recv()` of
up to 64 KiB and collects its sends until the connection calls `flush()` once per event
loop turn.

paho never learns that a send only reached our buffer: that changes nothing for delivery,
because bytes handed to the kernel are just as lost when the connection drops, and paho
keeps every unacknowledged QoS > 0 message for redelivery either way.

`BufferedClient` takes whole packets straight from that buffer, skipping paho's reader
(three or more reads and a dict update per length byte), and hands any packet but a
property-less PUBLISH to paho's own handler as if paho had read it. `take_publishes` goes
further for the run of such PUBLISH packets one recv() brought: parsed at offsets in the
received bytes and handed on as one list (`on_publishes`), not one `loop_read()` and one
`on_message` call each. It also decodes an
MQTT 5 PUBLISH that carries no properties (what every
publisher we know sends) without building paho's `Properties` object: measured, that object
costs ~20 µs per message, six times the rest of paho's decode. It builds the message
without the `MQTTMessageInfo` (and its `threading.Condition`) paho makes for every received
message but only uses for sent ones (3.6 -> 0.4 µs, timeit), and hands it straight to
`on_message` when no per-topic callbacks are registered, skipping paho's topic-filter walk
(~4.5 µs). Anything else (QoS 2, properties present, MQTT 3.1.1) takes paho's own path.
The overrides use paho 2.x internals (`_create_socket`, `_packet_read`, `_handle_publish`,
`_in_packet`, `_msgtime_mutex`, `_last_bytes_received`, `_on_message_filtered`,
`_in_callback_mutex`, `_manual_ack`, `_protocol`); pyproject pins paho to the tested minor
versions and tests/collector/test_mqtt_socket.py checks that they are still there.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

READ_SIZE = 65536
PUBLISH = 0x30
PUBACK = 0x40
# What paho hands on for a PUBLISH without properties; shared, as nobody writes to it.
NO_PROPERTIES = Properties(PacketTypes.PUBLISH)
# A received message's `info` is never read (it tracks the delivery of messages we send);
# one shared instance keeps the attribute there for code that expects it.
RECEIVED_INFO = mqtt.MQTTMessageInfo(0)


class ReceivedMessage(mqtt.MQTTMessage):
    """An incoming PUBLISH as paho would hand it on, built without paho's per-message
    `MQTTMessageInfo`."""

    __slots__ = ()

    def __init__(self, mid: int, topic: bytes, payload: bytes, qos: int, dup: bool,
                 retain: bool, timestamp: float | None = None) -> None:
        self.mid = mid
        self._topic = topic
        self.payload = payload
        self.qos = qos
        self.dup = dup
        self.retain = retain
        self.timestamp = mqtt.time_func() if timestamp is None else timestamp
        self.state = mqtt.mqtt_ms_invalid
        self.info = RECEIVED_INFO
        self.properties = NO_PROPERTIES


class BufferedSocket:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        # What the last recv() brought and how far into it the reads are: an offset, not a
        # slice per packet.
        self._data = b""
        self._pos = 0
        self._out = bytearray()

    def recv(self, bufsize: int) -> bytes:
        pos = self._pos
        if pos >= len(self._data):
            data = self.sock.recv(max(bufsize, READ_SIZE))  # BlockingIOError: paho's "again"
            if not data:
                return data  # closed by the peer
            self._data, pos = data, 0
        end = min(pos + bufsize, len(self._data))
        self._pos = end
        return self._data[pos:end]

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet already buffered, as (fixed header byte, body), or
        None when only part of one is here (paho's own reader then takes it byte by byte)."""
        data, pos = self._data, self._pos
        whole = _whole_packet(data, pos)
        if whole is None:
            return None
        start, end = whole
        self._pos = end
        return data[pos], data[start:end]

    def buffered(self) -> bool:
        """Whether received bytes wait here, where the selector cannot see them."""
        return self._pos < len(self._data) or (
            isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._out += data
        return len(data)

    def flush(self) -> bool:
        """Send what paho wrote; True when all of it is out, False when the kernel is full."""
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            del self._out[:sent]
        return True

    def close(self) -> None:
        # paho closes the socket right after writing its DISCONNECT, which is still here.
        with contextlib.suppress(OSError):
            self.flush()
        self.sock.close()

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:
        # setblocking, close, pending, getpeercert...: the real socket's own.
        return getattr(self.sock, name)


def _whole_packet(data: bytes, pos: int) -> tuple[int, int] | None:
    """(body start, end) of the packet at `pos` when all of it is in `data`, else None."""
    n = len(data)
    if pos >= n or not data[pos] & 0xF0:
        return None  # nothing, or packet type 0 (reserved): paho's reader calls it an error
    length, shift, i = 0, 0, pos + 1
    while True:  # the remaining length: 1 to 4 bytes, 7 bits each
        if i >= n or shift > 21:
            return None
        byte = data[i]
        length |= (byte & 127) << shift
        i += 1
        if byte < 128:
            break
        shift += 7
    end = i + length
    return (i, end) if end <= n else None


class BufferedClient(mqtt.Client):
    """A paho client whose socket is a BufferedSocket (paho 2.x creates it here)."""

    # Takes the messages `take_publishes` found, in one call, instead of `on_message` each.
    on_publishes: Callable[[list[ReceivedMessage]], None] | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _packet_read(self) -> MQTTErrorCode:
        # Whole packets already in our buffer skip paho's reader (three or more recv() calls
        # and a dict update per byte of the length); a PUBLISH without properties is handled
        # here, any other packet by paho's handler as if paho had read it.
        sock = self._sock
        if self._in_packet["command"] == 0 and isinstance(sock, BufferedSocket):
            whole = sock.take_packet()
            if whole is not None:
                command, body = whole
                rc = self._publish(command, body) if command & 0xF0 == PUBLISH else None
                if rc is None:
                    self._in_packet.update(command=command, have_remaining=1,
                                           remaining_length=len(body),
                                           packet=bytearray(body), to_process=0)
                    return super()._packet_read()
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
                return rc
        return super()._packet_read()

    def take_publishes(self, limit: int) -> int:
        """Hand the run of whole MQTT 5 QoS 0/1 PUBLISH packets without properties waiting in
        the buffer (at most `limit`) to `on_publishes` as one list, straight from the bytes
        the last recv() brought; how many. Stops at the first packet of any other kind or
        not all here, which paho's reader then takes (`loop_read`)."""
        sock = self._sock
        on_publishes = self.on_publishes
        if (on_publishes is None or not self._manual_ack or self._in_packet["command"] != 0
                or not isinstance(sock, BufferedSocket)
                or self._protocol != MQTTProtocolVersion.MQTTv5
                or self._on_message_filtered._root._children):
            return 0  # paho's dispatch, or acks paho sends itself: one packet at a time
        data, pos = sock._data, sock._pos
        messages: list[ReceivedMessage] = []
        now = mqtt.time_func()
        while len(messages) < limit:
            whole = _whole_packet(data, pos)
            if whole is None:
                break
            start, end = whole
            header = data[pos]
            qos = (header & 0x06) >> 1
            if header & 0xF0 != PUBLISH or qos > 1 or end - start < 2:
                break  # not a QoS 0/1 PUBLISH, or too short for one: paho's
            topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
            props_at = topic_end + 2 if qos else topic_end
            if props_at >= end or data[props_at] != 0 or topic_end == start + 2:
                break  # properties (a topic alias...) or malformed: paho's decode
            mid = (data[topic_end] << 8) | data[topic_end + 1] if qos else 0
            messages.append(ReceivedMessage(mid, data[start + 2:topic_end],
                                            data[props_at + 1:end], qos, bool(header & 0x08),
                                            bool(header & 0x01), now))
            pos = end
        if not messages:
            return 0
        sock._pos = pos
        with self._msgtime_mutex:
            self._last_bytes_received = now
        on_publishes(messages)
        return len(messages)

    def puback_all(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (manual ack) with one queued write: the same PUBACKs
        paho's ack() queues one packet at a time (type, length 2, the message id; MQTT 5
        leaves out the reason code when it is Success). ~3 µs a message less."""
        if mids and self._manual_ack:  # as ack(): without manual ack paho has acked them
            self._packet_queue(PUBACK, struct.pack(f"!{len(mids)}I",
                                                   *[0x4002_0000 | mid for mid in mids]), 0, 0)

    def _handle_publish(self) -> MQTTErrorCode:
        rc = self._publish(self._in_packet["command"], self._in_packet["packet"])
        return super()._handle_publish() if rc is None else rc

    def _publish(self, header: int, packet: bytes | bytearray) -> MQTTErrorCode | None:
        """Hand on an MQTT 5 QoS 0/1 PUBLISH without properties; None for any other."""
        qos = (header & 0x06) >> 1
        if self._protocol != MQTTProtocolVersion.MQTTv5 or qos > 1:
            return None
        topic_end = 2 + int.from_bytes(packet[0:2], "big")
        props_at = topic_end + (2 if qos else 0)
        if len(packet) <= props_at or packet[props_at] != 0 or topic_end == 2:
            return None  # properties (a topic alias...) or malformed: paho's decode
        mid = int.from_bytes(packet[topic_end:props_at], "big") if qos else 0
        message = ReceivedMessage(mid, bytes(packet[2:topic_end]), bytes(packet[props_at + 1:]),
                                  qos, bool(header & 0x08), bool(header & 0x01))
        on_message = self._on_message
        if self._on_message_filtered._root._children or on_message is None:
            self._handle_on_message(message)  # per-topic callbacks: paho's own dispatch
        else:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:  # as paho's own dispatch does
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
