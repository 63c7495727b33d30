"""The buffered paho socket and the property-less PUBLISH fast path, against a real mosquitto.

The collector's MQTT connection reads many packets per recv(), sends a batch's PUBACKs in
one send() and decodes MQTT 5 PUBLISH packets without properties itself. These tests check
what that must not change: every message arrives whole and in order (with and without
properties, QoS 0 and 1, retained, larger than one read), acknowledged messages are not
redelivered and unacknowledged ones are, and reads paused on a full queue resume with the
bytes already buffered.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.sources import mqtt_session
from collector.sources.mqtt_session import MqttConnection
from collector.sources.mqtt_socket import READ_SIZE, BufferedClient, BufferedSocket
from linemon.config import MqttSourceConfig
from tests.support.services import Mosquitto


def config(port: int, client_id: str, qos: int = 1) -> MqttSourceConfig:
    return MqttSourceConfig(kind="mqtt", name="m", port=port, client_id=client_id, qos=qos,
                            session_expiry_s=600)


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes, int, bool, Properties | None]]
                ) -> None:
    infos = [client.publish(topic, payload, qos=qos, retain=retain, properties=props)
             for topic, payload, qos, retain, props in items]
    for info in infos:
        info.wait_for_publish(10)


async def receive(conn: MqttConnection, count: int, timeout_s: float = 20
                  ) -> list[mqtt.MQTTMessage]:
    got: list[mqtt.MQTTMessage] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            batch = await conn.next_batch(500)
            got += batch
            conn.ack(batch)
    return got


async def quiet(conn: MqttConnection, wait_s: float = 1.0) -> list[mqtt.MQTTMessage]:
    """Whatever arrives within wait_s (redeliveries)."""
    try:
        async with asyncio.timeout(wait_s):
            return await conn.next_batch(1000)
    except TimeoutError:
        return []


def test_the_paho_internals_we_override_are_still_there() -> None:
    # BufferedClient overrides these paho 2.x internals; a paho release without them would
    # silently bypass the buffering and the fast path.
    assert callable(getattr(mqtt.Client, "_create_socket", None))
    assert callable(getattr(mqtt.Client, "_handle_publish", None))
    assert callable(getattr(mqtt.Client, "_handle_on_message", None))
    assert callable(getattr(mqtt.Client, "_packet_read", None))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert {"command", "have_remaining", "remaining_length", "packet", "to_process"} <= set(
        client._in_packet)
    assert hasattr(client, "_msgtime_mutex") and hasattr(client, "_last_bytes_received")
    # puback_all queues one out-packet the way paho queues each of its own
    assert list(inspect.signature(client._packet_queue).parameters)[:4] == [
        "command", "packet", "mid", "qos"]
    assert hasattr(client, "_out_packet") and hasattr(client, "_manual_ack")
    assert client._protocol == mqtt.MQTTv311  # take_publishes: MQTT 5 only
    # the fast path's direct dispatch
    assert client._on_message_filtered._root._children == {}
    client.message_callback_add("a/+", lambda *_: None)
    assert client._on_message_filtered._root._children
    assert hasattr(client, "_in_callback_mutex") and hasattr(client, "_userdata")
    assert set(mqtt.MQTTMessage.__slots__) == {
        "_topic", "dup", "info", "mid", "payload", "properties", "qos", "retain", "state",
        "timestamp"}  # ReceivedMessage sets every one of them


async def test_messages_with_and_without_properties_arrive_whole_and_in_order(
        mosquitto: Mosquitto) -> None:
    conn = MqttConnection(config(mosquitto.port, "sock-order", qos=1), ["plant/#"], None, None)
    await conn.connect(10)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = ("site", "north")
    big = bytes(range(256)) * (3 * READ_SIZE // 256 + 7)  # spans several reads
    items: list[tuple[str, bytes, int, bool, Properties | None]] = []
    for i in range(600):
        items.append((f"plant/l1/m{i % 7}/s", f'{{"seq": {i}}}'.encode(), i % 2, False,
                      props if i % 5 == 0 else None))
    items.insert(300, ("plant/l1/big/s", big, 1, False, None))
    items.append(("plant/l1/kept/s", b"retained", 1, True, None))
    pub = publisher(mosquitto.port)
    try:
        publish_all(pub, items)
        got = await receive(conn, len(items))
    finally:
        pub.loop_stop()
        pub.disconnect()
        await conn.close()
    for qos in (0, 1):  # MQTT keeps the order within a QoS, not across them
        assert ([(m.topic, m.payload) for m in got if m.qos == qos]
                == [(t, p) for t, p, q, _, _ in items if q == qos])
    sent_props = {p for _, p, _, _, props in items if props is not None}
    with_props = [m for m in got if m.payload in sent_props]
    assert len(with_props) == len(sent_props)
    assert all(m.properties.ContentType == "application/json" for m in with_props)
    assert all(m.properties.UserProperty == [("site", "north")] for m in with_props)
    assert [m.retain for m in got[-1:]] == [False]  # live delivery of a retained publish


async def test_acknowledged_messages_are_not_redelivered_and_the_rest_are(
        mosquitto: Mosquitto) -> None:
    cfg = config(mosquitto.port, "sock-acks")
    conn = MqttConnection(cfg, ["plant/#"], None, None)
    await conn.connect(10)
    await conn.close()  # the session stays on the broker and queues what follows
    pub = publisher(mosquitto.port)
    try:
        publish_all(pub, [(f"plant/l1/m1/s{i}", str(i).encode(), 1, False, None)
                          for i in range(400)])
    finally:
        pub.loop_stop()
        pub.disconnect()

    conn = MqttConnection(cfg, ["plant/#"], None, None)
    await conn.connect(10)
    first: list[mqtt.MQTTMessage] = []
    async with asyncio.timeout(20):
        while len(first) < 400:
            batch = await conn.next_batch(1000)
            first += batch
            conn.ack([m for m in batch if int(m.payload) < 300])  # the last 100 are not
    await asyncio.sleep(0.5)  # the coalesced PUBACKs leave on the next loop turns
    await conn.close()

    conn = MqttConnection(cfg, ["plant/#"], None, None)
    await conn.connect(10)
    try:
        again = await receive(conn, 100)
        extra = await quiet(conn)
    finally:
        await conn.close()
    assert sorted(int(m.payload) for m in again) == list(range(300, 400))
    assert all(m.dup for m in again)
    assert extra == []


async def test_reads_paused_on_a_full_queue_resume_with_the_buffered_bytes(
        mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_session, "QUEUE_SIZE", 20)
    cfg = config(mosquitto.port, "sock-pause", qos=0)
    conn = MqttConnection(cfg, ["plant/#"], None, None)
    await conn.connect(10)
    pub = publisher(mosquitto.port)
    try:
        publish_all(pub, [("plant/l1/m1/s", str(i).encode(), 0, False, None)
                          for i in range(2000)])
        await asyncio.sleep(1.0)  # the reader pauses meanwhile
        paused_at = len(conn.queue)  # reading stopped at the high-water mark
        got = await receive(conn, 2000)
    finally:
        pub.loop_stop()
        pub.disconnect()
        await conn.close()
    assert 20 <= paused_at < 2000
    assert [int(m.payload) for m in got] == list(range(2000))


async def test_per_topic_callbacks_still_get_their_messages_and_errors_still_raise(
        mosquitto: Mosquitto) -> None:
    conn = MqttConnection(config(mosquitto.port, "sock-filtered"), ["plant/#"], None, None)
    await conn.connect(10)
    filtered: list[str] = []
    conn.client.message_callback_add("plant/+/cmd/#", lambda _c, _u, m: filtered.append(m.topic))
    pub = publisher(mosquitto.port)
    try:
        publish_all(pub, [("plant/a/cmd/x", b"1", 1, False, None),
                          ("plant/a/b/c", b"2", 1, False, None)])
        got = await receive(conn, 1)
        assert [(m.topic, m.payload, m.qos, m.dup, m.retain) for m in got] == [
            ("plant/a/b/c", b"2", 1, False, False)]
        assert filtered == ["plant/a/cmd/x"]  # paho's rule: a matching filter takes it alone
    finally:
        pub.loop_stop()
        pub.disconnect()
        await conn.close()


def test_the_fast_path_hands_on_what_paho_would_and_raises_what_on_message_raises() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                            manual_ack=True)
    topic = b"plant/l1/m1/speed"
    # QoS 1, dup, retain; topic, packet id 7, no properties (0), payload
    packet = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + b"\x00" + b"{}"
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, m: got.append(m)
    client._in_packet = {"command": 0x30 | 0x08 | 0x02 | 0x01, "packet": packet}
    assert client._handle_publish() == mqtt.MQTT_ERR_SUCCESS
    [m] = got
    assert (m.topic, m.payload, m.mid, m.qos, m.dup, m.retain) == (
        "plant/l1/m1/speed", b"{}", 7, 1, True, True)
    assert m.properties is not None and m.properties.json() == {}
    assert m.timestamp > 0 and m.state == mqtt.mqtt_ms_invalid and m.info is not None

    def broken(*_: object) -> None:
        raise RuntimeError("on_message failed")

    client.on_message = broken
    with pytest.raises(RuntimeError, match="on_message failed"):
        client._handle_publish()
    client.suppress_exceptions = True  # paho's switch: log and go on
    assert client._handle_publish() == mqtt.MQTT_ERR_SUCCESS


def test_whole_packets_are_taken_from_the_buffer_and_partial_ones_left_for_paho() -> None:
    def publish(payload: bytes) -> bytes:  # QoS 0, topic "t", no properties
        body = b"\x00\x01t\x00" + payload
        n, length = len(body), bytearray()
        while True:
            byte, n = n % 128, n // 128
            length.append(byte | (128 if n else 0))
            if not n:
                return bytes([0x30]) + bytes(length) + body

    class Kernel:  # what the buffered socket reads from: one chunk per recv()
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        def recv(self, _size: int) -> bytes:
            return self.chunks.pop(0)

    # remaining lengths of 1, 2 and 3 bytes, each side of the boundaries
    sizes = [0, 1, 122, 123, 124, 16378, 16379, 16380, 70000]
    stream = b"".join(publish(bytes([i % 251]) * size) for i, size in enumerate(sizes))
    cut = len(stream) - 5  # the last packet arrives in two reads
    sock = BufferedSocket(Kernel([stream[:cut], stream[cut:]]))
    assert sock.take_packet() is None  # nothing read yet: paho's reader calls recv()
    first = sock.recv(1)  # as paho's reader does for the first packet
    assert first == b"\x30"
    sock._pos -= 1  # put it back to take whole packets
    taken = []
    while (packet := sock.take_packet()) is not None:
        taken.append(packet)
    assert [(h, len(b) - 4) for h, b in taken] == [(0x30, n) for n in sizes[:-1]]
    assert all(b[4:] == bytes([i % 251]) * n for i, ((_, b), n) in enumerate(zip(
        taken, sizes, strict=False)))
    rest = sock._data[sock._pos:]
    assert rest == stream[len(stream) - len(publish(b"x" * 70000)):cut]  # left whole for paho
    assert sock.recv(len(rest)) == rest and sock.recv(5) == stream[cut:]
    # packet type 0 is reserved: left to paho's reader, which reports a protocol error
    sock = BufferedSocket(Kernel([b"\x00\x02ab" + publish(b"x")]))
    assert sock.recv(0) == b""  # fills the buffer, takes nothing
    assert sock.take_packet() is None and sock.recv(4) == b"\x00\x02ab"


def test_a_run_of_whole_plain_publishes_is_handed_on_in_one_list_and_anything_else_ends_it(
        ) -> None:
    def publish(mid: int, payload: bytes, flags: int = 0x02, props: bytes = b"\x00") -> bytes:
        """MQTT 5 PUBLISH on topic "plant/t"; QoS from `flags` (0x02: 1), a packet id if QoS
        > 0, then the properties (none: one zero byte)."""
        qos = (flags & 0x06) >> 1
        body = b"\x00\x07plant/t" + (mid.to_bytes(2, "big") if qos else b"") + props + payload
        assert len(body) < 128
        return bytes([0x30 | flags, len(body)]) + body

    class Kernel:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def recv(self, _size: int) -> bytes:
            data, self.data = self.data, b""
            return data

        def send(self, data: bytes) -> int:
            return len(data)

        def close(self) -> None:
            """paho closes its socket when the client goes."""

    with_props = publish(8, b"p", props=b"\x02\x01\x01")  # a payload format indicator
    qos2 = publish(6, b"q2", flags=0x04)
    short = b"\x30\x01\x00"  # no room for a topic length
    unsuback = b"\xb0\x05\x00\x01t\x00x"  # not a PUBLISH, though its body would read as one
    stream = (publish(1, b"a") + publish(0, b"b", flags=0x00) + publish(3, b"c", flags=0x0A)
              + publish(4, b"d", flags=0x03) + unsuback + with_props + publish(5, b"e")
              + qos2 + short + publish(7, b"f"))
    cut = len(stream) - 3  # the last packet only partly here

    def client_on(data: bytes, protocol: int = mqtt.MQTTv5
                  ) -> tuple[BufferedClient, BufferedSocket, list[list[Any]]]:
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol,
                                manual_ack=True)
        batches: list[list[Any]] = []
        client.on_publishes = batches.append
        sock = client._sock = BufferedSocket(Kernel(data))
        assert sock.recv(0) == b""  # fills the buffer, takes nothing
        return client, sock, batches

    client, sock, batches = client_on(stream[:cut])
    assert client.take_publishes(100) == 4
    [batch] = batches
    assert [(m.topic, m.payload, m.mid, m.qos, m.dup, m.retain) for m in batch] == [
        ("plant/t", b"a", 1, 1, False, False), ("plant/t", b"b", 0, 0, False, False),
        ("plant/t", b"c", 3, 1, True, False), ("plant/t", b"d", 4, 1, False, True)]
    assert all(m.timestamp == batch[0].timestamp > 0 and m.properties is not None
               for m in batch)
    for other in (unsuback, with_props):  # not a PUBLISH; properties: paho's
        assert client.take_publishes(100) == 0
        assert sock.take_packet() == (other[0], other[2:])
    assert client.take_publishes(100) == 1 and batches[-1][0].payload == b"e"
    for other in (qos2, short):  # QoS 2; too short for a topic: paho's
        assert client.take_publishes(100) == 0
        assert sock.take_packet() == (other[0], other[2:])
    assert client.take_publishes(100) == 0  # not all here: paho's reader takes it
    assert sock._data[sock._pos:] == stream[len(stream) - len(publish(7, b"f")):cut]

    client, sock, batches = client_on(stream)
    assert client.take_publishes(2) == 2 and client.take_publishes(2) == 2
    client, sock, batches = client_on(publish(1, b"a") + short)  # the short one last
    assert client.take_publishes(100) == 1 and client.take_publishes(100) == 0
    assert sock.take_packet() == (short[0], short[2:])
    # Each of these leaves every packet to paho, one at a time.
    client, sock, batches = client_on(stream)
    client.message_callback_add("plant/#", lambda *_: None)
    assert client.take_publishes(100) == 0  # per-topic callbacks: paho's dispatch
    client, sock, batches = client_on(stream)
    client._manual_ack = False
    assert client.take_publishes(100) == 0  # paho acknowledges each as it goes
    client, sock, batches = client_on(stream, protocol=mqtt.MQTTv311)
    assert client.take_publishes(100) == 0  # MQTT 3.1.1 PUBLISH has no properties field
    client, sock, batches = client_on(stream)
    client._in_packet["command"] = 0x32
    assert client.take_publishes(100) == 0  # paho is part way through a packet
    assert batches == [] and sock._pos == 0


async def test_a_wait_ended_by_news_is_not_ended_again_by_its_until_in_the_next_wait() -> None:
    # The source's loop: a batch arrives as the oldest stored batch becomes durable (its
    # `until`), and the source waits again in the same turn.
    conn = MqttConnection(config(1883, "sock-wait"), ["plant/#"], None, None)
    loop = asyncio.get_running_loop()
    first_until, second_until = loop.create_future(), loop.create_future()

    async def two_waits() -> tuple[list[Any], list[Any]]:
        first = await conn.next_batch(10, until=first_until)
        return first, await conn.next_batch(10, until=second_until)

    waits = asyncio.create_task(two_waits())
    await asyncio.sleep(0)
    conn._on_messages(["m1"])  # type: ignore[list-item]
    first_until.set_result(None)
    await asyncio.sleep(0.1)
    assert not waits.done()  # still waiting for news: not ended by first_until's callback
    conn._on_messages(["m2"])  # type: ignore[list-item]
    assert await waits == (["m1"], ["m2"])


async def test_a_large_message_split_over_reads_arrives_whole(mosquitto: Mosquitto) -> None:
    conn = MqttConnection(config(mosquitto.port, "sock-big"), ["plant/#"], None, None)
    await conn.connect(10)
    payload = b"x" * (5 * READ_SIZE + 123)
    pub = publisher(mosquitto.port)
    try:
        publish_all(pub, [("plant/a/b/c", payload, 1, False, None),
                          ("plant/a/b/d", b"after", 1, False, None)])
        got = await receive(conn, 2)
    finally:
        pub.loop_stop()
        pub.disconnect()
        await conn.close()
    assert [(m.topic, len(m.payload)) for m in got] == [("plant/a/b/c", len(payload)),
                                                         ("plant/a/b/d", 5)]
