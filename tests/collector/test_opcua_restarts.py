"""The simulator's OPC-UA server restarted five times under a running linemon."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from linemon.app import Linemon
from linemon.model import MachineState, Quality, StateChanged
from simulators import SimulatedPlant
from simulators.opcua.server import OpcUaServer
from tests.collector.harness import Recorder, demo_machines, plant_config
from tests.collector.plc import monitored_item_count
from tests.support.plants import eventually, quiet_scenario

MACHINES = ("press-1", "weld-1")


async def restart(server: OpcUaServer, plant: SimulatedPlant) -> None:
    """Start the stopped server again holding the plant's current values, as a PLC's server
    would after a restart (the simulator's server would otherwise come back with zeros)."""
    assert plant.simulation is not None
    server._initial = {(c.machine, c.signal): c for c in plant.simulation.snapshot()}
    await server.start()


@pytest.mark.slow
async def test_five_server_restarts_resume_quickly_without_duplicates(tmp_path: Path) -> None:
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0, realtime_forever=True)
    await plant.start()
    assert plant.opcua is not None and plant.opcua_endpoint is not None
    source_config = {"kind": "opcua", "name": "plc-line1", "endpoint": plant.opcua_endpoint,
                     "publishing_interval_ms": 100, "watchdog_interval_s": 1.0, "timeout_s": 2.0}
    config = plant_config([source_config], demo_machines("plc-line1"), tmp_path)
    linemon = Linemon(config)
    recorder = Recorder()
    spool_and_engine = linemon.ingest

    async def ingest(samples):  # the real pipeline, with a copy of what went through it
        await spool_and_engine(samples)
        await recorder(samples)

    linemon.ingest = ingest  # type: ignore[method-assign]
    events = linemon.listen()
    (source,) = linemon.sources
    tags = sum(len(m["tags"]) for m in demo_machines("plc-line1"))
    await linemon.start()
    resume_s, detect_s = [], []
    try:
        await eventually(lambda: all(linemon.engine.trackers[m].state is MachineState.RUNNING
                                     for m in MACHINES), 20, "both machines running")
        for outage in range(1, 6):
            server = plant.opcua
            await server.stop()
            down = time.monotonic()
            await eventually(lambda n=outage: len(source.stats.gaps) == n, 10, "the outage")
            detect_s.append(time.monotonic() - down)
            await restart(server, plant)
            up = time.monotonic()
            seen = len(recorder.samples)
            await eventually(lambda s=seen: any(x.quality is Quality.GOOD
                                                for x in recorder.samples[s:]), 10, "data again")
            resume_s.append(time.monotonic() - up)
            await eventually(lambda: all(linemon.engine.trackers[m].state is not
                                         MachineState.OFFLINE for m in MACHINES), 10,
                             "machines back online")
            assert server._server is not None
            assert monitored_item_count(server._server) == tags == source.stats.monitored_items
        back = datetime.now(UTC)
        await eventually(lambda: any(x.source_ts > back for x in
                                     recorder.good("press-1", "good_count")),
                         10, "a part counted after the last restart")
        health = linemon.health()["sources"]["plc-line1"]
    finally:
        await linemon.stop()
        await plant.stop()
    print(f"\nOPC-UA restarts: outage seen after {[round(s, 2) for s in detect_s]} s, "
          f"data back {[round(s, 2) for s in resume_s]} s after the server")
    assert max(resume_s) < 10

    # each outage: a closed gap, every tag bad from its start, both machines offline
    gaps = source.stats.gaps
    assert len(gaps) == 5 and all(end is not None and end > start for start, end, _ in gaps)
    bad = recorder.bad()
    assert len(bad) == 5 * tags
    assert sorted({s.source_ts for s in bad}) == [start for start, _, _ in gaps]
    offline = Counter(e.machine for e in _drain(events)
                      if isinstance(e, StateChanged) and e.state is MachineState.OFFLINE)
    assert offline == {"press-1": 5, "weld-1": 5}

    # no sample twice: re-sent initial values only come back re-stamped, once, after a gap
    good = [(s.machine, s.signal, s.source_ts) for s in recorder.samples
            if s.quality is Quality.GOOD]
    assert [k for k, n in Counter(good).items() if n > 1] == []
    counts = [s.value for s in recorder.good("press-1", "good_count")]
    assert counts == sorted(counts)  # the counter never went back: no stale replay
    assert health["reconnects"] >= 5 and health["connected"]
    assert set(health["last_message_age_s"]) == set(MACHINES)


def _drain(queue):
    while not queue.empty():
        yield queue.get_nowait()
