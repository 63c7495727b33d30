"""What the browser tests serve: a real uvicorn that can be stopped and started again on the
same port (the board must notice, then recover), and the live plant behind the board.

The live plant is the end-to-end setup (tests/integration/test_end_to_end.py): the demo
line simulated over OPC-UA and MQTT (a real mosquitto), read by a real Linemon.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from api.app import create_app
from linemon.app import Linemon
from simulators import SimulatedPlant
from tests.support.plants import demo_config, quiet_scenario
from tests.support.services import Mosquitto
from tests.support.web import Uvicorn, serving

# name -> (role, lines, kiosk); the keys come from the environment, as in production.
LIVE_KEYS = {"kiosk-line-1": ("viewer", ["line-1"], True), "viewer": ("viewer", None, False)}


def live_key(name: str) -> str:
    return f"browser-test-{name}-0123456789abcdef"


@dataclass
class LivePlant:
    plant: SimulatedPlant
    linemon: Linemon
    web: Uvicorn


@contextlib.asynccontextmanager
async def live_plant(workdir: Path) -> AsyncIterator[LivePlant]:
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    plant = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0, mqtt_host="127.0.0.1",
                           mqtt_port=broker.port, realtime_forever=True)
    try:
        await plant.start()
        keys = []
        for name, (role, lines, kiosk) in LIVE_KEYS.items():
            env = "LINEMON_BROWSER_KEY_" + name.upper().replace("-", "_")
            os.environ[env] = live_key(name)
            keys.append({"name": name, "role": role, "key_env": env, "kiosk": kiosk,
                         **({"lines": lines} if lines else {})})
        config = demo_config(opcua_endpoint=plant.opcua_endpoint, mqtt_port=broker.port,
                             data_dir=workdir, api={"keys": keys})  # no anonymous access
        linemon = Linemon(config)
        await linemon.start()
        try:
            async with serving(create_app(linemon, manage=False)) as web:
                yield LivePlant(plant, linemon, web)
        finally:
            await linemon.stop()
    finally:
        await plant.stop()
        broker.stop()
