"""MQTT: shared subscriptions for scale-out, logins, TLS with a CA of our own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from collector.sources.mqtt_session import RECEIVE_MAXIMUM
from linemon.model import Sample
from tests.collector.brokers import make_ca_and_server_cert, with_login, with_tls
from tests.collector.harness import Recorder, plant_config, source_named, supervised
from tests.support.plants import eventually
from tests.support.services import Mosquitto

TOPIC = "plant/line-1/m-1/seq"


def gateway(port: int, **settings: Any) -> dict[str, Any]:
    return {"kind": "mqtt", "name": "gateway", "port": port, **settings}


def machine() -> dict[str, Any]:
    return {"id": "m-1", "source": "gateway", "ideal_cycle_time_s": 1.0,
            "tags": {"state": {"topic": "plant/line-1/m-1/state"},
                     "seq": {"topic": TOPIC, "type": "int", "ts_field": None}}}


async def publish(port: int, seqs: range, tls: Any = None,
                  login: tuple[str, str] | None = None) -> None:
    """QoS 1 from a plain paho client, in a thread: waiting for its PUBACKs must not block
    the event loop the collector runs on."""
    await asyncio.to_thread(_publish, port, seqs, tls, login)


def _publish(port: int, seqs: range, tls: Any, login: tuple[str, str] | None) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls is not None:
        client.tls_set(ca_certs=str(tls.ca))
    if login is not None:
        client.username_pw_set(*login)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(TOPIC, json.dumps({"value": n}), qos=1) for n in seqs]
    for info in infos:
        info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def test_two_collectors_in_a_shared_subscription_split_one_stream(
        mosquitto: Mosquitto) -> None:
    collectors = []
    for n in (1, 2):
        config = plant_config([gateway(mosquitto.port, shared_group="linemon",
                                       client_id=f"linemon-{n}")], [machine()])
        collectors.append((source_named(config, "gateway"), Recorder()))
    (one, first), (two, second) = collectors
    async with supervised(one, first), supervised(two, second):
        await eventually(lambda: one.stats.connected and two.stats.connected, 10, "both up")
        await publish(mosquitto.port, range(1, 1001))
        await eventually(lambda: len(first.samples) + len(second.samples) >= 1000, 15,
                         "the whole stream")
    a, b = set(first.values("m-1", "seq")), set(second.values("m-1", "seq"))
    print(f"\nshared subscription: {len(a)} + {len(b)} messages")
    assert a | b == set(range(1, 1001)) and not a & b
    assert len(a) > 100 and len(b) > 100  # really shared, not one taking all


async def test_login_from_the_environment(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    broker = with_login(tmp_path / "broker", "collector", "s3cret")
    broker.start()
    monkeypatch.setenv("MQTT_USER", "collector")
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")
    login = {"username_env": "MQTT_USER", "password_env": "MQTT_PASSWORD"}
    try:
        source = source_named(plant_config([gateway(broker.port, **login)], [machine()]),
                              "gateway")
        recorder = Recorder()
        async with supervised(source, recorder):
            await eventually(lambda: source.stats.connected, 10, "logged in")
            await publish(broker.port, range(1, 11), login=("collector", "s3cret"))
            await eventually(lambda: len(recorder.samples) == 10, 10, "the messages")

        monkeypatch.setenv("MQTT_PASSWORD", "wrong")
        refused = source_named(plant_config([gateway(broker.port, **login)], [machine()]),
                               "gateway")
        async with supervised(refused, Recorder()):
            await eventually(lambda: refused.stats.last_error, 10, "the refusal")
    finally:
        broker.stop()
    print(f"\nwrong password: {refused.stats.last_error}")
    assert "refused the login" in (refused.stats.last_error or "")
    assert "password_env" in (refused.stats.last_error or "")
    assert not refused.stats.connected


async def test_tls_with_the_plants_own_ca(tmp_path: Path) -> None:
    files = make_ca_and_server_cert(tmp_path / "pki")
    other = make_ca_and_server_cert(tmp_path / "other", name="other")
    broker = with_tls(tmp_path / "broker", files)
    broker.start()
    try:
        source = source_named(plant_config(
            [gateway(broker.port, tls=True, ca_file=str(files.ca))], [machine()]), "gateway")
        recorder = Recorder()
        async with supervised(source, recorder):
            await eventually(lambda: source.stats.connected, 10, "the TLS session")
            await publish(broker.port, range(1, 501), tls=files)
            await eventually(lambda: len(recorder.samples) == 500, 10, "the messages")

        untrusted = source_named(plant_config(
            [gateway(broker.port, tls=True, ca_file=str(other.ca))], [machine()]), "gateway")
        async with supervised(untrusted, Recorder()):
            await eventually(lambda: untrusted.stats.last_error, 10, "the refusal")
    finally:
        broker.stop()
    assert recorder.values("m-1", "seq") == list(range(1, 501))
    print(f"\nuntrusted broker: {untrusted.stats.last_error}")
    assert "is not trusted" in (untrusted.stats.last_error or "")
    assert not untrusted.stats.connected


async def test_a_stuck_spool_leaves_the_messages_on_the_broker(mosquitto: Mosquitto) -> None:
    """Backpressure: nothing is acknowledged before it is spooled, so while the spool is
    stuck the broker stops at the in-flight window and keeps the rest. For an MQTT 5
    session that window is linemon's Receive Maximum (mosquitto's max_inflight_messages,
    100 here, applies to 3.1.1 clients only)."""
    source = source_named(plant_config([gateway(mosquitto.port)], [machine()]), "gateway")
    recorder = Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: source.stats.connected, 10, "the subscription")
        recorder.gate.clear()
        await publish(mosquitto.port, range(1, 5001))  # all 5000 on the broker now
        taken_while_stuck = source.stats.received
        recorder.gate.set()
        await eventually(lambda: len(recorder.samples) == 5000, 20, "the backlog")
    print(f"\nstuck spool: {taken_while_stuck} messages taken in before it moved again")
    assert taken_while_stuck <= RECEIVE_MAXIMUM
    assert recorder.values("m-1", "seq") == list(range(1, 5001))


async def test_later_batches_reach_the_engine_while_an_earlier_one_waits_for_the_disk(
        mosquitto: Mosquitto) -> None:
    """Pipelining: a batch goes to `emit` (the engine's step runs at once) while an earlier
    batch still waits for the spool, so a slow fsync does not hold back the next stop. Acks
    still wait: nothing is acknowledged before it is durable, and then in order."""
    seen: list[Sample] = []  # what emit was given, at once
    disk = asyncio.Event()  # the spool's commit

    async def emit(samples: list[Sample]) -> None:
        seen.extend(samples)
        await disk.wait()

    source = source_named(plant_config([gateway(mosquitto.port)], [machine()]), "gateway")
    async with supervised(source, emit):
        await eventually(lambda: source.stats.connected, 10, "the subscription")
        await publish(mosquitto.port, range(1, 11))
        await eventually(lambda: len(seen) == 10, 10, "the first batch")
        await publish(mosquitto.port, range(11, 21))
        await eventually(lambda: len(seen) == 20, 10, "the second batch, the first not durable")
        assert source.stats.emitted == 0, "acknowledged before it was durable"
        disk.set()
        await eventually(lambda: source.stats.emitted == 20, 10, "the acks")
    assert [s.value for s in seen] == list(range(1, 21))
    # The broker has the acks: the resumed session gets only what is new.
    again = source_named(plant_config([gateway(mosquitto.port)], [machine()]), "gateway")
    recorder = Recorder()
    async with supervised(again, recorder):
        await eventually(lambda: again.stats.connected, 10, "the resumed session")
        await publish(mosquitto.port, range(21, 26))
        await eventually(lambda: len(recorder.samples) >= 5, 10, "the new messages")
        await asyncio.sleep(0.3)  # a redelivery would come first; give it room anyway
    assert recorder.values("m-1", "seq") == list(range(21, 26))
