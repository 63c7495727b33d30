"""1,000 malformed payloads of 16 kinds among 1,000 good ones: all good ones arrive, every bad
one is counted under its reason, the log stays short, the source never stops."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest

from collector.sources.mqtt_socket import ReceivedMessage
from collector.sources.sparkplug_schema import Payload
from tests.collector.harness import Recorder, plant_config, source_named, supervised
from tests.support.plants import eventually
from tests.support.services import Mosquitto


def now() -> str:
    return datetime.now(UTC).isoformat()


def good(seq: int) -> tuple[str, bytes]:
    return "plant/line-1/m-1/batch", json.dumps({"value": seq, "seq": seq, "ts": now()}).encode()


BATCH, TEMPERATURE = "plant/line-1/m-1/batch", "plant/line-1/m-1/temperature"
SPB = "spBv1.0/lm"
HUGE = b"1" + b"0" * 400  # a JSON number no float holds: the standard parser gives an int
MALFORMED: dict[str, tuple[int, tuple[str, bytes] | list[tuple[str, bytes]]]] = {
    "invalid_json": (80, (BATCH, b'{"value": 1,')),
    "invalid_utf8": (80, (BATCH, b'{"value": "\xff\xfe"}')),
    "not_an_object": (80, (BATCH, b"[1, 2, 3]")),
    "missing_field": (80, (BATCH, b'{"reading": 1}')),
    "wrong_type": (80, [(BATCH, b'{"value": "twelve"}'), (BATCH, b'{"value": ' + HUGE + b"}")]),
    "nan_or_inf": (80, [(TEMPERATURE, b'{"value": NaN}'),
                        (TEMPERATURE, b'{"value": ' + HUGE + b"}")]),
    "bad_timestamp": (80, [(BATCH, b'{"value": 1, "ts": "yesterday"}'),
                           (BATCH, b'{"value": 1, "ts": ' + HUGE + b"}")]),
    "timestamp_out_of_range": (80, (BATCH, b'{"value": 1, "ts": "2001-01-01T00:00:00Z"}')),
    "oversize": (80, (BATCH, json.dumps({"value": 1, "pad": "x" * 2000}).encode())),
    "unknown_machine": (80, ("plant/line-1/ghost-7/batch", b'{"value": 1}')),
    "bad_protobuf": (100, (f"{SPB}/DDATA/edge-1/dev-1", b"\x0a\xff\xff\xff\xff\x0f")),
    "unknown_topic": (50, (f"{SPB}/DDATA/edge-1", Payload(seq=1).SerializeToString())),
    "no_birth": (50, (f"{SPB}/DDATA/edge-9/dev-1", Payload(seq=1).SerializeToString())),
}


async def test_bad_payloads_are_counted_and_good_ones_all_arrive(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    sources = [
        {"kind": "mqtt", "name": "gateway", "port": mosquitto.port, "max_payload_bytes": 1024},
        {"kind": "mqtt", "name": "spb", "port": mosquitto.port, "format": "sparkplug",
         "group_id": "lm"},
    ]
    machines = [
        {"id": "m-1", "source": "gateway", "ideal_cycle_time_s": 1.0, "tags": {
            "good_count": {"topic": "plant/{line}/{machine}/good_count", "type": "int"},
            "batch": {"topic": "plant/{line}/{machine}/batch", "type": "int"},
            "temperature": {"topic": "plant/{line}/{machine}/temperature", "type": "float"}}},
        {"id": "m-2", "source": "spb", "ideal_cycle_time_s": 1.0, "tags": {
            "good_count": {"device": "edge-1/dev-1", "metric": "GoodCount"}}},
    ]
    config = plant_config(sources, machines)
    gateway, spb = source_named(config, "gateway"), source_named(config, "spb")
    messages = [good(seq) for seq in range(1, 1001)]
    for _, (count, kinds) in MALFORMED.items():
        kinds = kinds if isinstance(kinds, list) else [kinds]
        messages += [kinds[i % len(kinds)] for i in range(count)]
    random.Random(4).shuffle(messages)
    messages = _in_order(messages)
    # a counter that goes back 100 times: passed on (a reset to the engine), but counted
    counts: list[tuple[str, bytes]] = []
    for i in range(1, 101):
        for value in (i * 10, 0):
            counts.append(("plant/line-1/m-1/good_count",
                           json.dumps({"value": value, "ts": now()}).encode()))

    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="linemon.source.mqtt")
    async with supervised(gateway, recorder), supervised(spb, recorder):
        await eventually(lambda: gateway.stats.connected and spb.stats.connected, 10, "both up")
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.max_inflight_messages_set(1000)
        publisher.connect("127.0.0.1", mosquitto.port)
        publisher.loop_start()
        try:
            infos = [publisher.publish(topic, payload, qos=1) for topic, payload in
                     messages + counts]
            await eventually(lambda: all(i.is_published() for i in infos), 30, "all published")
            await eventually(lambda: 1000 in recorder.values("m-1", "batch") and
                             len(recorder.values("m-1", "good_count")) == 200, 30,
                             "the good messages")
            await eventually(lambda: sum(gateway.stats.rejected.values()) +
                             sum(spb.stats.rejected.values()) == 1100, 30, "every reject")
        finally:
            publisher.loop_stop()
            publisher.disconnect()
        still_running = gateway.stats.connected and spb.stats.connected

    rejected = gateway.stats.rejected + spb.stats.rejected
    expected = {reason: count for reason, (count, _) in MALFORMED.items()}
    expected["counter_backwards"] = 100
    print(f"\nrejected by reason: {dict(rejected)}")
    assert dict(rejected) == expected
    assert sum(count for count, _ in MALFORMED.values()) == 1000 and len(expected) == 14
    assert recorder.values("m-1", "batch") == list(range(1, 1001))  # 100 % of the good ones
    assert recorder.values("m-1", "good_count") == [v for i in range(1, 101) for v in (i * 10, 0)]
    assert still_running and gateway.stats.reconnects == spb.stats.reconnects == 0
    warnings = [r for r in caplog.records if r.name == "linemon.source.mqtt"]
    print(f"{len(warnings)} log lines for {sum(rejected.values())} rejects")
    assert len(warnings) <= 2 * len(expected)  # rate-limited: about one line per reason


def _in_order(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Shuffled, except that the good messages keep their order among themselves."""
    goods = iter(sorted((m for m in messages if b'"seq"' in m[1]),
                        key=lambda m: json.loads(m[1])["seq"]))
    return [next(goods) if b'"seq"' in m[1] else m for m in messages]


def test_a_topic_that_is_not_utf8_is_counted_not_fatal() -> None:
    # MQTT requires UTF-8 topics and mosquitto refuses other ones, so no broker here delivers
    # one; a broker that did would have had the source fail on it, reconnect and get the
    # same unacknowledged message again, forever.
    config = plant_config(
        [{"kind": "mqtt", "name": "gateway", "port": 1883}],
        [{"id": "m-1", "source": "gateway", "ideal_cycle_time_s": 1.0,
          "tags": {"state": {"topic": "plant/{line}/{machine}/state"},
                   "batch": {"topic": "plant/{line}/{machine}/batch", "type": "int"}}}])
    source = source_named(config, "gateway")
    messages = [ReceivedMessage(mid, topic, json.dumps({"value": mid}).encode(), 1, False, False)
                for mid, topic in [(1, BATCH.encode()), (2, b"plant/line-1/\xff\xfe/batch"),
                                   (3, BATCH.encode())]]
    samples = source._decode_all(messages)  # type: ignore[attr-defined]
    assert [s.value for s in samples] == [1, 3]
    assert source.stats.rejected == {"invalid_utf8": 1} and source.stats.received == 3
