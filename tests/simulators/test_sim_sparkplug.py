"""Sparkplug B, read with a plain paho subscriber and decoded with the Sparkplug B schema."""

from __future__ import annotations

from simulators import Scenario, SimulatedPlant
from simulators.sparkplug.schema import BOOLEAN, Payload
from tests.simulators.sim_helpers import scripted_dict, wait_for

GROUP = "spBv1.0/linemon"
NBIRTH, NDEATH = f"{GROUP}/NBIRTH/line-1", f"{GROUP}/NDEATH/line-1"
TAGS = {
    "StateCode": 3,
    "State": 12,
    "FaultCode": 3,
    "GoodCount": 7,
    "RejectCount": 7,
    "Speed": 10,
    "Temperature": 10,
    "Pressure": 10,
}


def decode(message) -> Payload:
    return Payload.FromString(message.payload)


def metrics(payload: Payload) -> dict:
    return {m.name: m for m in payload.metrics}


def value(metric):
    return getattr(metric, metric.WhichOneof("value"))


async def test_births_data_deaths_and_rebirth(mosquitto, mqtt_recorder):
    scenario = Scenario.from_dict(
        scripted_dict(
            timeline=["at 00:04 pack-1 down reason=17 for 1m", "at 00:06 mqtt disconnect for 1m"]
        )
    )
    recorder = mqtt_recorder("spBv1.0/#")
    plant = SimulatedPlant(
        scenario,
        speed=600,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_mode="sparkplug",
    )
    await plant.start()
    try:
        await wait_for(lambda: recorder.on(f"{GROUP}/DBIRTH/line-1/pack-1"), what="DBIRTH")
        first = decode(recorder.on(NBIRTH)[0])
        node = metrics(first)
        assert first.seq == 0 and first.timestamp > 0
        assert value(node["bdSeq"]) == 0 and node["bdSeq"].datatype == 8
        assert (
            value(node["Node Control/Rebirth"]) is False
            and node["Node Control/Rebirth"].datatype == 11
        )

        dbirth = decode(recorder.on(f"{GROUP}/DBIRTH/line-1/paint-1")[0])
        births = metrics(dbirth)
        assert {name: m.datatype for name, m in births.items()} == TAGS
        assert len({m.alias for m in dbirth.metrics}) == len(TAGS)
        unit = births["Temperature"].properties
        assert list(unit.keys) == ["engUnit"] and unit.values[0].string_value == "degC"
        assert not recorder.on(f"{GROUP}/DBIRTH/line-1/press-1")  # an OPC-UA machine

        # the scripted outage: the broker publishes our will, then we are born again
        death = decode((await wait_for(lambda: recorder.on(NDEATH), what="NDEATH"))[0])
        assert value(metrics(death)["bdSeq"]) == 0
        await wait_for(lambda: len(recorder.on(NBIRTH)) >= 2, what="NBIRTH after the outage")
        assert value(metrics(decode(recorder.on(NBIRTH)[1]))["bdSeq"]) == 1

        rebirth = Payload(timestamp=1)
        rebirth.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
        recorder.publish(f"{GROUP}/NCMD/line-1", rebirth.SerializeToString())
        await wait_for(lambda: len(recorder.on(NBIRTH)) >= 3, what="NBIRTH after a Rebirth")
        third = decode(recorder.on(NBIRTH)[2])
        assert third.seq == 0 and value(metrics(third)["bdSeq"]) == 1  # same connection

        await plant.wait_until_done()
        truth = plant.truth()
    finally:
        await plant.stop()
    await wait_for(lambda: len(recorder.on(NDEATH)) >= 2, what="NDEATH on stop")
    assert value(metrics(decode(recorder.on(NDEATH)[1]))["bdSeq"]) == 1

    # replay everything: seq discipline, aliases only in DDATA, final values = truth
    names: dict[int, tuple[str, str]] = {}
    current: dict[tuple[str, str], object] = {}
    seq = None
    for message in recorder.snapshot():
        kind = message.topic.split("/")[2]
        if kind in ("NDEATH", "NCMD"):
            continue
        payload = decode(message)
        if kind == "NBIRTH":
            assert payload.seq == 0
        else:
            assert payload.seq == (seq + 1) % 256, message.topic
        seq = payload.seq
        device = message.topic.split("/")[-1]
        for metric in payload.metrics:
            if kind == "DBIRTH":
                names[metric.alias] = (device, metric.name)
            if kind == "DDATA":
                assert not metric.name and metric.alias in names
                assert names[metric.alias][0] == device
            if kind in ("DBIRTH", "DDATA"):
                current[names[metric.alias]] = value(metric)
    assert seq is not None
    for machine in ("paint-1", "pack-1"):
        counters = truth["machines"][machine]["counters"]
        assert current[(machine, "GoodCount")] == counters["good_count"] > 0
        assert current[(machine, "RejectCount")] == counters["reject_count"]
        assert current[(machine, "State")] == truth["machines"][machine]["intervals"][-1]["state"]
