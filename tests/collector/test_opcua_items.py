"""OPC-UA monitored items and polling, against a real asyncua server the test writes to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from linemon.model import Quality
from tests.collector.harness import Recorder, plant_config, source_named, supervised
from tests.collector.plc import TestPlc, node
from tests.support.plants import eventually


@pytest.fixture
async def plc() -> AsyncIterator[TestPlc]:
    server = TestPlc(machines=("m-1", "m-2"))
    await server.start()
    yield server
    await server.stop()


def opcua(plc: TestPlc, **settings: Any) -> dict[str, Any]:
    return {"kind": "opcua", "name": "plc", "endpoint": plc.endpoint, "publishing_interval_ms": 20,
            "watchdog_interval_s": 1.0, "timeout_s": 2.0, **settings}


def machine(machine_id: str, **tags: dict[str, Any]) -> dict[str, Any]:
    return {"id": machine_id, "source": "plc", "ideal_cycle_time_s": 1.0,
            "tags": {"state": {"node": node(machine_id, "StateCode")}, **tags}}


async def test_deadband_sampling_interval_and_queue_size_reach_the_server(plc: TestPlc) -> None:
    config = plant_config([opcua(plc)], [machine(
        "m-1",
        temperature={"node": node("m-1", "Temperature"), "deadband": 5.0,
                     "sampling_interval_ms": 100, "queue_size": 50},
        seq={"node": node("m-1", "Seq"), "type": "int"},
    )])
    await plc.write("m-1", "Temperature", 20.0)
    source, recorder = source_named(config, "plc"), Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: recorder.values("m-1", "seq"), 10, "the initial values")
        # asyncua's server measures the deadband from the previous sample, where the spec
        # says from the last reported value; these steps mean the same under both readings.
        for seq, temperature in enumerate([22.0, 30.0, 33.0, 40.0], start=1):
            await plc.write("m-1", "Temperature", temperature)
            await plc.write("m-1", "Seq", seq)
        await eventually(lambda: 4 in recorder.values("m-1", "seq"), 10, "seq 4")

    # within 5.0: not reported (absolute deadband, applied by the server)
    assert recorder.values("m-1", "temperature") == [20.0, 30.0, 40.0]
    assert recorder.values("m-1", "seq") == [0, 1, 2, 3, 4]
    asked = {r.ItemToMonitor.NodeId.Identifier: r.RequestedParameters
             for r in plc.monitored_requests}
    temperature = asked["m-1.Temperature"]
    assert temperature.SamplingInterval == 100 and temperature.QueueSize == 50
    assert temperature.Filter.DeadbandValue == 5.0
    assert asked["m-1.StateCode"].SamplingInterval == -1  # "as the publishing interval"
    assert asked["m-1.StateCode"].Filter.Body is None  # no filter
    assert source.stats.monitored_items == plc.monitored_item_count() == 0  # after the stop


async def test_a_slow_consumer_loses_no_value(plc: TestPlc) -> None:
    """Backpressure: while the spool is stuck, values wait on the server, none is dropped."""
    config = plant_config([opcua(plc)], [machine(
        "m-1", seq={"node": node("m-1", "Seq"), "type": "int", "queue_size": 2000})])
    source, recorder = source_named(config, "plc"), Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: recorder.values("m-1", "seq") == [0], 10, "the initial value")
        recorder.gate.clear()  # the consumer stops taking anything
        for seq in range(1, 1501):  # ~ a few hundred publishes: more than the client buffers
            await plc.write("m-1", "Seq", seq)
        received_while_stuck = source.stats.received
        recorder.gate.set()
        await eventually(lambda: 1500 in recorder.values("m-1", "seq"), 30, "seq 1500")
    assert recorder.values("m-1", "seq") == list(range(1501))
    assert received_while_stuck < 1500  # the rest waited on the server, not in our memory
    assert source.stats.rejected == {} and source.stats.gaps == []


async def test_polling_reads_in_batches_reports_changes_and_bad_status(plc: TestPlc) -> None:
    config = plant_config(
        [opcua(plc, mode="polling", poll_interval_ms=50, max_nodes_per_read=3)],
        [machine(m, seq={"node": node(m, "Seq"), "type": "int"},
                 temperature={"node": node(m, "Temperature")}) for m in ("m-1", "m-2")])
    source, recorder = source_named(config, "plc"), Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: recorder.values("m-2", "seq"), 10, "the first poll")
        for seq in range(1, 6):
            await plc.write("m-1", "Seq", seq)
            await eventually(lambda s=seq: s in recorder.values("m-1", "seq"), 5, f"seq {seq}")
        await plc.write_bad("m-1", "StateCode")
        await eventually(lambda: recorder.bad("m-1"), 5, "the bad status")
        await plc.write("m-1", "StateCode", 1)
        await eventually(lambda: 1 in recorder.values("m-1", "state"), 5, "the good value")

    assert recorder.values("m-1", "seq") == [0, 1, 2, 3, 4, 5]  # changes only, none repeated
    # 6 tags polled in Read requests of at most 3 nodes (the 1-node reads: the watchdog)
    assert max(plc.read_sizes) == 3 and plc.read_sizes.count(3) >= 10
    (bad,) = recorder.bad("m-1")
    assert bad.signal == "state" and bad.value == 0 and bad.quality is Quality.BAD
    assert recorder.values("m-1", "state") == [0, 1]  # the bad reading never became a value
    assert source.stats.duplicates == 0
