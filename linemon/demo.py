"""`linemon demo`: a simulated line, an embedded broker, linemon and its API in one process."""

from __future__ import annotations

import logging
from pathlib import Path

from linemon.broker import EmbeddedBroker
from linemon.config import MqttSourceConfig, OpcUaSourceConfig, load_config
from linemon.serve import serve
from simulators import SimulatedPlant, load_scenario

log = logging.getLogger("linemon.demo")


async def run_demo(config_path: Path, scenario_path: Path, api_port: int | None = None) -> None:
    config = load_config(config_path)
    mqtt = next(s for s in config.sources if isinstance(s, MqttSourceConfig))
    opcua = next(s for s in config.sources if isinstance(s, OpcUaSourceConfig))
    opcua_port = int(opcua.endpoint.rsplit(":", 1)[1].split("/")[0])
    broker = EmbeddedBroker(mqtt.host, mqtt.port)
    await broker.start()
    plant = SimulatedPlant(
        load_scenario(scenario_path),
        speed=1.0,
        opcua_port=opcua_port,
        mqtt_host=mqtt.host,
        mqtt_port=mqtt.port,
        mqtt_protocol=mqtt.protocol,
        realtime_forever=True,
    )
    await plant.start()
    try:
        await serve(config, port=api_port, on_ready=_announce(config.lines[0].id))
    finally:
        await plant.stop()
        await broker.stop()
        print("linemon demo stopped.", flush=True)


def _announce(line: str):
    def announce(url: str) -> None:
        print(
            "\nlinemon demo is running (Ctrl-C to stop)\n"
            f"  line board: {url}/board/{line}\n"
            f"  explorer:   {url}/explorer\n"
            f"  phone view: {url}/phone\n"
            f"  lines:      {url}/api/v1/lines\n"
            f"  line view:  {url}/api/v1/lines/{line}\n"
            f"  API docs:   {url}/docs\n",
            flush=True,
        )

    return announce
