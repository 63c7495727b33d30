"""Scale-out on real servers: two engine processes (one line each) and one API process, sharing
one mosquitto and one influxd, with the simulated plant behind them.

The demo plant's five machines are split into two lines: line-a (press, welder) over OPC-UA
and line-b (paint, inspection, packer) over MQTT. The API process has neither source nor
engine: everything it serves comes from the engines' bus topics and from InfluxDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml

from simulators import SimulatedPlant
from tests.support.influx import InfluxServer
from tests.support.plants import REPO, demo_config, eventually, quiet_scenario
from tests.support.services import Mosquitto, free_port

ADMIN_KEY = "scale-out-test-admin-key-0123456789"
TOKEN_ENV = "LINEMON_SCALE_TEST_TOKEN"
KEY_ENV = "LINEMON_SCALE_TEST_ADMIN_KEY"
LINES = {"line-a": ["press-1", "weld-1"], "line-b": ["paint-1", "inspect-1", "pack-1"]}


def split_plant(data: dict[str, Any]) -> None:
    machines = {m["id"]: m for m in data["lines"][0]["machines"]}
    data["lines"] = [
        {"id": line, "name": f"Line {line[-1].upper()}", "end_machine": ids[-1],
         "machines": [machines[m] for m in ids]}
        for line, ids in LINES.items()]


@dataclass
class Site:
    plant: SimulatedPlant
    api: httpx.AsyncClient
    api_url: str
    procs: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


def _config(plant: SimulatedPlant, mosquitto: Mosquitto, influxd: InfluxServer,
            root: Path) -> Path:
    config = demo_config(opcua_endpoint=plant.opcua_endpoint, mqtt_port=mosquitto.port,
                         data_dir=root)
    data = config.model_dump(mode="json", exclude_defaults=True)
    split_plant(data)
    run = uuid.uuid4().hex[:8]
    data["historian"] = {
        "backend": {"kind": "influxdb", "url": influxd.url, "org": "linemon-test",
                    "bucket": f"scale-{run}", "downsampled_bucket": f"scale-{run}-1m",
                    "token_env": TOKEN_ENV, "flush_interval_s": 0.2},
        "spool": {"path": str(root / "data" / "spool.sqlite")},
    }
    data["notifications"] = {"outbox": {"path": str(root / "data" / "outbox.sqlite")}}
    data["bus"] = {"port": mosquitto.port, "stale_after_s": 3}
    data["api"] = {"keys": [{"name": "admin", "role": "admin", "key_env": KEY_ENV}]}
    path = root / "plant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
async def site(mosquitto: Mosquitto, influxd: InfluxServer, tmp_path: Path
               ) -> AsyncIterator[Site]:
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0, mqtt_host="127.0.0.1",
                           mqtt_port=mosquitto.port, realtime_forever=True)
    await plant.start()
    config = _config(plant, mosquitto, influxd, tmp_path)
    env = {**os.environ, TOKEN_ENV: influxd.token, KEY_ENV: ADMIN_KEY}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    api_port = free_port()
    commands = {
        "engine-a": ["--role", "engine", "--lines", "line-a", "--port", str(free_port())],
        "engine-b": ["--role", "engine", "--lines", "line-b", "--port", str(free_port())],
        "api": ["--role", "api", "--port", str(api_port)],
    }
    for name, args in commands.items():
        procs[name] = _spawn(tmp_path / f"{name}.log", ["--config", str(config), *args], env)
    url = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as api:
        yield Site(plant, api, url, procs, tmp_path)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    await plant.stop()


def _spawn(log_path: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen([sys.executable, "-m", "linemon.cli", "run", *args],
                            stdout=log, stderr=log, env=env, cwd=REPO)


async def _lines(site: Site) -> dict[str, Any] | None:
    try:
        response = await site.api.get("/api/v1/lines")
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return {line["line"]: line for line in response.json()}


async def _machine_states(site: Site, line: str) -> dict[str, str] | None:
    response = await site.api.get(f"/api/v1/lines/{line}")
    if response.status_code != 200:
        return None
    return {m["machine"]: m["state"] for m in response.json()["machines"]}


async def test_api_serves_live_and_history_of_lines_run_by_two_engines(site: Site) -> None:
    async def both_live() -> dict[str, Any] | None:
        lines = await _lines(site)
        if lines is None or set(lines) != set(LINES):
            return None
        return lines if all(line["live"] and line["running"] == len(LINES[lid])
                            for lid, line in lines.items()) else None

    try:
        lines = await eventually(both_live, 60, "both lines running, from their engines")
    except AssertionError:
        print("\n".join(f"--- {n}\n{site.log(n)}" for n in site.procs))
        raise
    assert {lid: line["machines"] for lid, line in lines.items()} == {
        lid: len(ids) for lid, ids in LINES.items()}

    # Each engine runs only its own lines' sources: line-a is OPC-UA, line-b is MQTT.
    ready = (await site.api.get("/readyz")).json()
    assert ready["ready"] and ready["bus"] == {"connected": True} and ready["sources"] == {}
    engine_ports = {n: int(site.procs[n].args[-1]) for n in ("engine-a", "engine-b")}
    async with httpx.AsyncClient() as plain:
        for name, port in engine_ports.items():
            engine_ready = (await plain.get(f"http://127.0.0.1:{port}/readyz")).json()
            assert engine_ready["ready"], (name, engine_ready)
            assert list(engine_ready["sources"]) == (
                ["plc-line1"] if name == "engine-a" else ["gateway-line1"])
            # An engine serves no data routes: people use the API processes.
            assert (await plain.get(f"http://127.0.0.1:{port}/api/v1/lines")).status_code == 404
            # Its metrics, for Prometheus, need a key as the API's do.
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            assert (await plain.get(metrics_url)).status_code == 401
            text = (await plain.get(metrics_url, headers=site.api.headers)).text
            source = "plc-line1" if name == "engine-a" else "gateway-line1"
            assert f'linemon_source_connected{{source="{source}"}} 1.0' in text
            assert "linemon_spool_depth" in text and "linemon_machine_state{" in text
            assert "linemon_live_subscribers" not in text  # no boards on an engine

    # A stop on each line: the board's WebSocket on line-b sees it, REST sees both.
    ws_url = site.api_url.replace("http", "ws") + f"/api/v1/lines/line-b/live?key={ADMIN_KEY}"
    async with websockets.connect(ws_url) as board:
        first = json.loads(await board.recv())
        assert first["line"]["line"] == "line-b"
        await site.plant.stop_machine("press-1", reason=17, for_s=6)
        await site.plant.stop_machine("paint-1", reason=23, for_s=6)

        async def paint_stop_pushed() -> dict[str, Any] | None:
            message = json.loads(await asyncio.wait_for(board.recv(), 5))
            changed = any(c["kind"] == "state" and c["machine"] == "paint-1"
                          and c["state"] == "down" for c in message["changes"])
            return message if changed else None

        # The push carrying the stop as a change also carries it in the snapshot.
        pushed = await eventually(paint_stop_pushed, 20, "paint-1's stop pushed to the board")
        states = {m["machine"]: m["state"] for m in pushed["line"]["machines"]}
        assert states["paint-1"] == "down"

    async def press_down() -> bool:
        states = await _machine_states(site, "line-a")
        return states is not None and states["press-1"] == "down"

    await eventually(press_down, 20, "press-1 down on line-a")

    # Alerts live in the engines; an acknowledgement goes to the owning engine and back.
    async def firing() -> dict[str, Any] | None:
        alerts = (await site.api.get("/api/v1/alerts")).json()
        stops = {a["labels"]["machine"]: a for a in alerts
                 if a["rule_id"] == "machine_stopped" and a["state"] == "firing"}
        return stops if {"press-1", "paint-1"} <= set(stops) else None

    stops = await eventually(firing, 20, "a firing stop alert on each line")
    acked = await site.api.post(f"/api/v1/alerts/{stops['paint-1']['fingerprint']}/ack")
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "admin"
    again = await site.api.post(f"/api/v1/alerts/{'0' * 16}/ack")
    assert again.status_code == 404

    # A silence goes to the line's engine; it comes back in the engine's published view.
    made = await site.api.post("/api/v1/silences", json={
        "line": "line-b", "duration_s": 600, "comment": "paint booth service"})
    assert made.status_code == 201, made.text
    silence_id = made.json()["id"]

    async def listed() -> bool:
        return silence_id in {s["id"] for s in (await site.api.get("/api/v1/silences")).json()}

    await eventually(listed, 10, "the silence published by engine-b")
    ended = await site.api.delete(f"/api/v1/silences/{silence_id}")
    assert ended.status_code == 200, ended.text

    # History: both engines wrote their stops to the one InfluxDB; the API reads them all.
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    async def both_stops_closed() -> dict[str, Any] | None:
        response = await site.api.get("/api/v1/downtime", params={"start": start, "end": end})
        if response.status_code != 200:
            return None
        items = {d["machine"]: d for d in response.json()["items"] if d["end"] is not None}
        return items if {"press-1", "paint-1"} <= set(items) else None

    stops_history = await eventually(both_stops_closed, 40, "both stops in the history")
    assert stops_history["press-1"]["line"] == "line-a"
    assert stops_history["paint-1"]["line"] == "line-b"
    assert stops_history["paint-1"]["reason_code"] == "23"

    # Reason coding goes through the line's engine (the API process writes nothing).
    coded = await site.api.put(f"/api/v1/downtime/{stops_history['paint-1']['id']}/reason",
                               json={"reason_code": "17", "note": "coded via the API role"})
    assert coded.status_code == 200, coded.text
    assert coded.json()["reason_code"] == "17"
    audit = (await site.api.get(f"/api/v1/downtime/{stops_history['paint-1']['id']}/audit"))
    assert audit.status_code == 200 and audit.json()[0]["by"] == "admin"

    timeline = await site.api.get("/api/v1/lines/line-a/machines/press-1/timeline",
                                  params={"start": start, "end": end})
    assert timeline.status_code == 200, timeline.text
    assert "down" in {i["state"] for i in timeline.json()["intervals"]}

    # An engine that stops: its line turns stale (503, `live: false`), the other carries on.
    site.procs["engine-a"].send_signal(signal.SIGINT)
    assert site.procs["engine-a"].wait(15) == 0, site.log("engine-a")

    async def line_a_stale() -> dict[str, Any] | None:
        lines = await _lines(site)
        return lines if lines and not lines["line-a"]["live"] else None

    lines = await eventually(line_a_stale, 15, "line-a reported as not live")
    assert lines["line-b"]["live"]
    gone = await site.api.get("/api/v1/lines/line-a")
    assert gone.status_code == 503 and "engine" in gone.json()["detail"]
    assert (await site.api.get("/api/v1/lines/line-b")).status_code == 200
