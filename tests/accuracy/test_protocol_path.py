"""The same check through the real transport: the simulator serves OPC-UA (asyncua) and MQTT
JSON (mosquitto) at 30x speed, linemon reads them with its own collectors on the
simulator's clock, and every scripted stop must come out with its reason, start and end
within one sampling interval of the truth.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from linemon.app import Linemon
from linemon.model import DowntimeEnded, DowntimeStarted
from simulators import Scenario, SimulatedPlant
from tests.accuracy.compare import engine_stops, stop_check
from tests.accuracy.replay import plant_config
from tests.support.plants import eventually
from tests.support.services import Mosquitto

SPEED = 30.0
PUBLISHING_MS = 100


def scenario() -> Scenario:
    machine = {"ideal_cycle_time_s": 2.0, "random": False, "reject_rate": 0.02}
    # The collectors judge payload timestamps against the wall clock (older than 7 days is
    # refused), so this run starts now and runs ahead of the wall at 30x.
    start = datetime.now(UTC).replace(microsecond=0)
    return Scenario.from_dict({
        "name": "wire", "site": "wire-plant", "start": start.isoformat(), "duration": "4m",
        "reasons": {17: "Jam", 23: "Tool break", 5: "Die change"},
        "lines": [{"id": "l1", "machines": [
            {"id": "cut-1", "protocol": "opcua", **machine},
            {"id": "bend-1", "protocol": "opcua", **machine},
            {"id": "seal-1", "protocol": "mqtt", **machine}]}],
        "mqtt": {"retain": True},  # a late subscriber gets every tag's current value
        "timeline": ["at 00:03:00 bend-1 changeover for 20s code=5"],
    })


async def test_scripted_stops_through_opcua_and_mqtt(mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    sc = scenario()
    plant = SimulatedPlant(sc, speed=SPEED, opcua_port=0, mqtt_host="127.0.0.1",
                           mqtt_port=mosquitto.port)
    await plant.start()
    try:
        assert plant.opcua_endpoint is not None
        config = plant_config(
            sc, opcua_endpoint=plant.opcua_endpoint, mqtt_port=mosquitto.port,
            historian={"backend": {"kind": "sqlite", "path": str(tmp_path / "h.sqlite")},
                       "spool": {"path": str(tmp_path / "spool.sqlite")}})
        linemon = Linemon(config, clock=plant.now)
        events = linemon.listen()
        await linemon.start()
        try:
            await eventually(lambda: all(s.stats.connected for s in linemon.sources), 30,
                             "both sources to connect")
            # stops from now on (the scripted changeover comes at 3:00)
            await plant.stop_machine("cut-1", reason=23, for_s=40)
            await plant.stop_machine("seal-1", reason=17, for_s=12)  # a micro-stop
            await eventually(lambda: plant.now() - sc.start > timedelta(minutes=2, seconds=20),
                             30, "2:20 of simulated time")
            await plant.stop_machine("seal-1", reason=23, for_s=35)
            await plant.wait_until_done()
            truth = plant.truth()
            seen: list = []

            def all_stops_closed() -> bool:
                while not events.empty():
                    seen.append(events.get_nowait())
                ended = {e.event.id for e in seen if isinstance(e, DowntimeEnded)}
                started = [e for e in seen if isinstance(e, DowntimeStarted)
                           and e.event.category.value != "planned"]
                return len(started) >= 4 and all(e.event.id in ended for e in started)

            await eventually(all_stops_closed, 20, "the four scripted stops to end")
        finally:
            await linemon.stop()
    finally:
        await plant.stop()
    # one sampling interval, in simulated time: what the OPC-UA subscription may batch
    tolerance = max(1.0, PUBLISHING_MS / 1000 * SPEED)
    check = stop_check(truth, engine_stops(seen), tolerance)
    print(f"\nover OPC-UA + MQTT at {SPEED:g}x: {len(check.matched)} stops, worst start/end "
          f"delta {check.worst_delta_s:.3f} s (allowed {tolerance:g} s)")
    assert len(check.matched) >= 4 and not check.missed and not check.phantom
    assert not check.problems, check.problems
    assert check.worst_delta_s <= tolerance
