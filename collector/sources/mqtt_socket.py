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
property-less PUBLISH to paho's own handler as if paho had read it. It also decodes an
MQTT 5 PUBLISH that carries no properties (what every
publisher we know sends) without building paho's `Properties` object: measured, that object
costs ~20 µs per message, six times the rest of paho's decode. It builds the message
without the `MQTTMessageInfo` (and its `threading.Condition`) paho makes for every received
message but only uses for sent ones (3.6 -> 0.4 µs, timeit), and hands it straight to
`on_message` when no per-topic callbacks are registered, skipping paho's topic-filter walk
(~4.5 µs). Anything else (QoS 2, properties present, MQTT 3.1.1) takes paho's own path.
The overrides use paho 2.x internals (`_create_socket`, `_packet_read`, `_handle_publish`,
`_in_packet`, `_msgtime_mutex`, `_last_bytes_received`, `_on_message_filtered`,
`_in_callback_mutex`); pyproject pins paho to the tested minor versions and
tests/collector/test_mqtt_socket.py checks that they are still there.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import Sequence
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
                 retain: bool) -> None:
        self.mid = mid
        self._topic = topic
        self.payload = payload
        self.qos = qos
        self.dup = dup
        self.retain = retain
        self.timestamp = mqtt.time_func()
        self.state = mqtt.mqtt_ms_invalid
        self.info = RECEIVED_INFO
        self.properties = NO_PROPERTIES


class BufferedSocket:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._in = memoryview(b"")
        self._out = bytearray()

    def recv(self, bufsize: int) -> bytes:
        if not self._in:
            data = self.sock.recv(max(bufsize, READ_SIZE))  # BlockingIOError: paho's "again"
            if not data:
                return data  # closed by the peer
            self._in = memoryview(data)
        chunk = bytes(self._in[:bufsize])
        self._in = self._in[bufsize:]
        return chunk

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet already buffered, as (fixed header byte, body), or
        None when only part of one is here (paho's own reader then takes it byte by byte)."""
        buf = self._in
        n = len(buf)
        if not n or not buf[0] & 0xF0:
            return None  # nothing, or packet type 0 (reserved): paho's reader calls it an error
        length, mult, i = 0, 1, 1
        while True:  # the remaining length: 1 to 4 bytes, 7 bits each
            if i >= n or i > 4:
                return None
            byte = buf[i]
            length += (byte & 127) * mult
            i += 1
            if byte < 128:
                break
            mult <<= 7
        end = i + length
        if end > n:
            return None
        self._in = buf[end:]
        return buf[0], bytes(buf[i:end])

    def buffered(self) -> bool:
        """Whether received bytes wait here, where the selector cannot see them."""
        return bool(self._in) or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)

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


class BufferedClient(mqtt.Client):
    """A paho client whose socket is a BufferedSocket (paho 2.x creates it here)."""

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
