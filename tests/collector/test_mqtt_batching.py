"""MQTT: a steady stream is taken in batches, not a message per event-loop turn."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import paho.mqtt.client as mqtt

from collector.sources import mqtt as mqtt_source
from linemon.model import Sample
from tests.collector.harness import Recorder, plant_config, source_named, supervised
from tests.support.plants import eventually
from tests.support.services import Mosquitto

TOPIC = "plant/line-1/m-1/seq"
MESSAGES = 1500


def _trickle(port: int) -> None:
    """One QoS 1 message about every millisecond: faster than a batch period, slower than
    the source's loop turns, so that without coalescing each batch would hold one or two."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for n in range(1, MESSAGES + 1):
        infos.append(client.publish(TOPIC, json.dumps({"value": n}), qos=1))
        time.sleep(0.001)
    for info in infos:
        info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def test_a_steady_stream_is_taken_a_batch_per_period_and_arrives_whole_in_order(
        mosquitto: Mosquitto) -> None:
    config = plant_config(
        [{"kind": "mqtt", "name": "gateway", "port": mosquitto.port}],
        [{"id": "m-1", "source": "gateway", "ideal_cycle_time_s": 1.0,
          "tags": {"state": {"topic": "plant/line-1/m-1/state"},
                   "seq": {"topic": TOPIC, "type": "int", "ts_field": None}}}])
    source = source_named(config, "gateway")
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    batches: list[tuple[float, int]] = []

    async def emit(samples: list[Sample]) -> None:
        batches.append((loop.time(), len(samples)))
        await recorder(samples)

    async with supervised(source, emit):
        await eventually(lambda: source.stats.connected, 10, "connected")
        publisher = threading.Thread(target=_trickle, args=(mosquitto.port,))
        publisher.start()
        try:
            await eventually(lambda: len(recorder.samples) >= MESSAGES, 30, "the stream")
        finally:
            await asyncio.to_thread(publisher.join)
    assert recorder.values("m-1", "seq") == list(range(1, MESSAGES + 1))
    # A batch is taken a period after the one before, or at once when COALESCE_UNDER
    # messages wait: a slow machine makes fewer, bigger batches, never more. (The emits'
    # times trail the takes' by a loop turn or so: some slack at each end.)
    elapsed = batches[-1][0] - batches[0][0]
    most = elapsed / mqtt_source.BATCH_PERIOD_S + 3 + MESSAGES / mqtt_source.COALESCE_UNDER
    print(f"\n{len(batches)} batches in {elapsed:.2f} s (at most {most:.0f}), "
          f"{MESSAGES / len(batches):.1f} messages a batch")
    assert len(batches) <= most
