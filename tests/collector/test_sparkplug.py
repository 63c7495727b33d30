"""linemon as a Sparkplug B host application, against the simulator's edge node on mosquitto."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from collector.sources.sparkplug_schema import BOOLEAN, REBIRTH, UINT64, Payload
from linemon.model import Quality
from simulators import SimulatedPlant
from tests.collector.harness import Recorder, plant_config, source_named, supervised
from tests.support.plants import eventually, quiet_scenario
from tests.support.services import Mosquitto

GROUP = "linemon"
MACHINES = ("paint-1", "inspect-1", "pack-1")
METRICS = {"state": ("StateCode", "int"), "fault_code": ("FaultCode", "int"),
           "good_count": ("GoodCount", "int"), "reject_count": ("RejectCount", "int"),
           "temperature": ("Temperature", "float")}


def sparkplug_plant(port: int) -> Any:
    source = {"kind": "mqtt", "name": "spb", "port": port, "format": "sparkplug",
              "group_id": GROUP, "client_id": f"linemon-host-{time.monotonic_ns()}"}
    machines = [{"id": m, "source": "spb", "ideal_cycle_time_s": 3.0, "tags": {
        signal: {"device": f"line-1/{m}", "metric": metric, "type": kind}
        for signal, (metric, kind) in METRICS.items()}} for m in MACHINES]
    return plant_config([source], machines)


class Spy:
    """A plain paho client on the broker: sees every Sparkplug message, can inject some."""

    def __init__(self, port: int) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, message: self.messages.append(message)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{GROUP}/#", qos=1)
        self.client.loop_start()

    def on(self, kind: str) -> list[Any]:
        return [Payload.FromString(m.payload) for m in list(self.messages)
                if m.topic.split("/")[2] == kind]

    def last_seq(self) -> int:
        seqs = [Payload.FromString(m.payload).seq for m in list(self.messages)
                if m.topic.split("/")[2] in ("NBIRTH", "DBIRTH", "DDATA", "NDATA")]
        return seqs[-1]

    def inject(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
async def edge(mosquitto: Mosquitto) -> AsyncIterator[tuple[SimulatedPlant, Spy]]:
    spy = Spy(mosquitto.port)
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, mqtt_host="127.0.0.1",
                           mqtt_port=mosquitto.port, mqtt_mode="sparkplug",
                           realtime_forever=True)
    await plant.start()
    await eventually(lambda: spy.on("DBIRTH"), 10, "the edge node's births")
    yield plant, spy
    await plant.stop()
    spy.close()


def fresh(recorder: Recorder, machine: str, signal: str, after: float) -> list[Any]:
    return [s.value for s in recorder.good(machine, signal) if s.received_ts.timestamp() > after]


async def test_births_data_and_death(edge: tuple[SimulatedPlant, Spy],
                                     mosquitto: Mosquitto) -> None:
    plant, spy = edge
    births_before = len(spy.on("NBIRTH"))
    source, recorder = source_named(sparkplug_plant(mosquitto.port), "spb"), Recorder()
    async with supervised(source, recorder):
        # linemon joins after the births: it asks for new ones (NCMD Node Control/Rebirth)
        await eventually(lambda: all(recorder.values(m, "state") for m in MACHINES), 10,
                         "every machine's state from the rebirth")
        (ncmd,) = spy.on("NCMD")
        assert [(m.name, m.boolean_value) for m in ncmd.metrics] == [(REBIRTH, True)]
        assert len(spy.on("NBIRTH")) == births_before + 1
        # DDATA by alias: counts move on
        started = time.time()
        await eventually(lambda: all(fresh(recorder, m, "good_count", started)
                                     for m in MACHINES), 15, "counts from DDATA")
        for machine in MACHINES:
            counts = recorder.values(machine, "good_count")
            assert counts == sorted(counts) and len(set(counts)) == len(counts)

        # an NDEATH of an older connection (stale bdSeq) changes nothing
        stale = Payload(timestamp=int(time.time() * 1000))
        stale.metrics.add(name="bdSeq", datatype=UINT64, long_value=99)
        spy.inject(f"spBv1.0/{GROUP}/NDEATH/line-1", stale.SerializeToString())
        await plant.stop()  # the edge node's goodbye: NDEATH with the current bdSeq
        await eventually(lambda: recorder.bad(), 10, "the death")
    bad = recorder.bad()
    assert {(s.machine, s.signal) for s in bad} == {
        (m, signal) for m in MACHINES for signal in METRICS}
    assert all(s.quality is Quality.BAD for s in bad)
    assert source.stats.rejected == {} and source.stats.gaps == []
    assert source.stats.rebirth_requests == 1


async def test_a_seq_gap_asks_for_a_rebirth(edge: tuple[SimulatedPlant, Spy],
                                            mosquitto: Mosquitto) -> None:
    _, spy = edge
    source, recorder = source_named(sparkplug_plant(mosquitto.port), "spb"), Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: all(recorder.values(m, "state") for m in MACHINES), 10,
                         "the first births")
        await eventually(lambda: source.stats.rebirth_requests == 1, 5, "the join's rebirth")
        births = len(spy.on("NBIRTH"))
        # a DDATA out of sequence, as if messages had been lost on the way
        lost = Payload(timestamp=int(time.time() * 1000), seq=(spy.last_seq() + 100) % 256)
        spy.inject(f"spBv1.0/{GROUP}/DDATA/line-1/paint-1", lost.SerializeToString())
        await eventually(lambda: len(spy.on("NBIRTH")) > births, 10, "the edge node reborn")
        assert source.stats.rebirth_requests == 2
        request = spy.on("NCMD")[-1]
        assert request.metrics[0].name == REBIRTH and request.metrics[0].datatype == BOOLEAN
        # after the rebirth the data goes on, and nothing was taken twice
        started = time.time()
        await eventually(lambda: fresh(recorder, "pack-1", "good_count", started), 15,
                         "counts after the rebirth")
    assert source.stats.rejected == {}
    assert source.stats.duplicates > 0  # the rebirth's values we had already
    for machine in MACHINES:
        stamps = [s.source_ts for s in recorder.good(machine, "good_count")]
        assert len(stamps) == len(set(stamps))
