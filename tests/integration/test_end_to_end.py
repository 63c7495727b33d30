"""The whole path on real servers: asyncua simulator + mosquitto -> collectors -> engine -> API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from linemon.app import Linemon
from linemon.model import DowntimeEnded, MachineState
from simulators import SimulatedPlant
from tests.support.plants import demo_config, eventually, next_event, quiet_scenario
from tests.support.services import Mosquitto


@pytest.fixture
async def running(mosquitto: Mosquitto, tmp_path: Path):
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0,
                           mqtt_host="127.0.0.1", mqtt_port=mosquitto.port,
                           realtime_forever=True)
    await plant.start()
    config = demo_config(opcua_endpoint=plant.opcua_endpoint, mqtt_port=mosquitto.port,
                         data_dir=tmp_path)
    linemon = Linemon(config)
    app = create_app(linemon, manage=False)
    await linemon.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://linemon") as client:
        yield plant, linemon, client
    await linemon.stop()
    await plant.stop()


async def test_every_machine_reaches_the_api_with_state_and_oee(running) -> None:
    _plant, linemon, client = running

    async def all_live():
        body = (await client.get("/api/v1/lines/line-1")).json()
        states = {m["machine"]: m["state"] for m in body["machines"]}
        return body if all(s != "offline" for s in states.values()) else None

    body = await eventually(all_live, 30, "every machine to report a state")
    assert {m["machine"] for m in body["machines"]} == {
        "press-1", "weld-1", "paint-1", "inspect-1", "pack-1"}
    sources = {linemon.config.source(m.source).kind for _, m in linemon.config.machines()}
    assert sources == {"opcua", "mqtt"}

    async def counting():
        body = (await client.get("/api/v1/lines/line-1")).json()
        return body if all(m["good"] > 0 for m in body["machines"]) else None

    body = await eventually(counting, 30, "every machine to count parts")
    for machine in body["machines"]:
        assert machine["oee"]["planned_time_s"] > 0
        assert machine["oee"]["total_count"] == machine["good"] + machine["reject"]
    summary = (await client.get("/api/v1/lines")).json()
    assert summary[0]["line"] == "line-1" and summary[0]["machines"] == 5


@pytest.mark.parametrize("machine", ["press-1", "paint-1"], ids=["opcua", "mqtt"])
async def test_scripted_stop_becomes_one_downtime_event(running, machine: str) -> None:
    plant, linemon, client = running
    events = linemon.listen()
    await eventually(lambda: linemon.engine.trackers[machine].state is MachineState.RUNNING,
                     30, f"{machine} running")
    await plant.stop_machine(machine, reason=17, for_s=4)
    ended = await next_event(events, DowntimeEnded, 30, machine=machine)
    stop = ended.event
    assert stop.reason_code == "17" and stop.reason_text == "Jam"
    assert abs(stop.duration_s() - 4) <= 1
    detail = (await client.get(f"/api/v1/lines/line-1/machines/{machine}")).json()
    assert detail["machine"] == machine


async def test_unknown_line_is_a_problem_json_404(running) -> None:
    _, _, client = running
    response = await client.get("/api/v1/lines/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "no line 'nope'" in response.json()["detail"]


async def test_a_running_linemon_hands_free_memory_back_once_a_minute(running) -> None:
    """linemon/allocator.py: the task that returns free heap pages runs with the engine."""
    names = {task.get_name(): task for task in asyncio.all_tasks()}
    assert "return-free-memory" in names and not names["return-free-memory"].done()
