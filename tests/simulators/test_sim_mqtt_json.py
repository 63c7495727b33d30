"""JSON over MQTT, read with a plain paho subscriber, against the ground truth."""

from __future__ import annotations

import itertools
import json
import re

from simulators import Scenario, SimulatedPlant
from simulators.signals import SIGNAL_NAMES
from tests.simulators.sim_helpers import scripted_dict, wait_for

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def state_code_changes(truth: dict, machine: str) -> list[tuple[int, str]]:
    changes: list[tuple[int, str]] = []
    for interval in truth["machines"][machine]["intervals"]:
        if not changes or changes[-1][0] != interval["state_code"]:
            changes.append((interval["state_code"], interval["start"]))
    return changes


async def run_to_the_end(plant: SimulatedPlant, recorder) -> dict:
    await plant.start()
    try:
        await plant.wait_until_done()
        truth = plant.truth()
        (publisher,) = plant.mqtt
        last_seq = publisher.seq
        await wait_for(
            lambda: any(
                json.loads(m.payload)["seq"] == last_seq for m in recorder.snapshot()[-50:]
            ),
            what=f"the last message (seq {last_seq})",
        )
    finally:
        await plant.stop()
    return truth


async def test_json_per_signal_matches_truth(mosquitto, mqtt_recorder, scripted):
    recorder = mqtt_recorder("plant/#")
    plant = SimulatedPlant(scripted, speed=1200, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
    truth = await run_to_the_end(plant, recorder)
    messages = recorder.snapshot()
    topics = {m.topic for m in messages}
    machines = {t.split("/")[2] for t in topics}
    assert machines == {"paint-1", "pack-1"}  # press-1 and weld-1 are OPC-UA machines
    assert {t.split("/")[3] for t in topics} == set(SIGNAL_NAMES)
    payloads = [json.loads(m.payload) for m in messages]
    assert all(set(p) == {"value", "ts", "seq"} and TS.match(p["ts"]) for p in payloads)
    seqs = [p["seq"] for p in payloads]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, strictly increasing

    for machine in ("paint-1", "pack-1"):
        published = [
            (json.loads(m.payload)["value"], json.loads(m.payload)["ts"])
            for m in messages
            if m.topic == f"plant/line-1/{machine}/state_code"
        ]
        assert published == state_code_changes(truth, machine)
        last = {
            signal: json.loads(recorder.on(f"plant/line-1/{machine}/{signal}")[-1].payload)["value"]
            for signal in ("good_count", "reject_count")
        }
        counters = truth["machines"][machine]["counters"]
        assert last == counters and counters["good_count"] > 0
    faults = [json.loads(m.payload) for m in recorder.on("plant/line-1/pack-1/fault_code")]
    jam = [f for f in faults if f["value"] == 17]
    stop = next(s for s in truth["machines"]["pack-1"]["stops"] if s["reason_code"] == 17)
    assert [f["ts"] for f in jam] == [stop["start"]]
    resets = [json.loads(m.payload) for m in recorder.on("plant/line-1/paint-1/good_count")]
    assert any(
        r["value"] == 0 and r["ts"] in truth["machines"]["paint-1"]["plc_restarts"] for r in resets
    )


async def test_json_per_machine_with_an_outage(mosquitto, mqtt_recorder):
    scenario = Scenario.from_dict(
        scripted_dict(
            timeline=["at 00:04 pack-1 down reason=17 for 1m", "at 00:03 mqtt disconnect for 2m"]
        )
    )
    recorder = mqtt_recorder("factory/#")
    plant = SimulatedPlant(
        scenario,
        speed=1200,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_mode="json-per-machine",
        mqtt_prefix="factory",
    )
    truth = await run_to_the_end(plant, recorder)
    assert truth["mqtt_outages"] == [
        {"start": "2024-03-04T05:03:00.000Z", "end": "2024-03-04T05:05:00.000Z"}
    ]
    messages = recorder.snapshot()
    assert {m.topic for m in messages} == {"factory/line-1/paint-1", "factory/line-1/pack-1"}
    payloads = [json.loads(m.payload) for m in messages]
    assert all(set(p) == {"ts", "seq", *SIGNAL_NAMES} for p in payloads)
    seqs = list(dict.fromkeys(p["seq"] for p in payloads))  # QoS 1: redelivery may repeat
    assert seqs == sorted(seqs)
    assert max(b - a for a, b in itertools.pairwise(seqs)) > 1  # lost during the outage
    inside = [p for p in payloads if "2024-03-04T05:03:00.000Z" < p["ts"] < "2024-03-04T05:05:00"]
    # what comes back after the outage is one snapshot per machine, then live data again
    assert len(inside) <= 2
    pack = [p for p in payloads if p["ts"] >= "2024-03-04T05:05:00"]
    assert pack  # live again
    for machine in ("paint-1", "pack-1"):
        last = json.loads(recorder.on(f"factory/line-1/{machine}")[-1].payload)
        counters = truth["machines"][machine]["counters"]
        assert (last["good_count"], last["reject_count"]) == (
            counters["good_count"],
            counters["reject_count"],
        )
        final = truth["machines"][machine]["intervals"][-1]
        assert (last["state"], last["fault_code"]) == (final["state"], final["reason_code"])
