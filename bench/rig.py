"""The bench rig: real servers (mosquitto, influxd) and generated plants of any size.

    with influxd() as influx, mosquitto() as broker:
        config = plant_config(machines=100, mqtt_port=broker.port, influx_url=influx.url)

A generated plant has `machines` machines on lines of 20, each with the tags of TAGS
(state, counters, fault code, process values), read over MQTT (JSON per signal, the
simulators' format) or OPC-UA (string NodeIds `<line>.<machine>.<tag>` in NAMESPACE).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from linemon.config import PlantConfig, cross_check
from tests.collector.brokers import ConfiguredMosquitto
from tests.support.influx import InfluxServer, find_influxd
from tests.support.services import Mosquitto

NAMESPACE = "urn:linemon:bench"
TOKEN_ENV = "LINEMON_BENCH_INFLUX_TOKEN"
BUCKET = "linemon"
PER_LINE = 20
# signal -> (MQTT topic suffix / OPC-UA tag, type). Ten tags per machine.
TAGS: dict[str, tuple[str, str]] = {
    "state": ("state_code", "auto"),
    "good_count": ("good_count", "int"),
    "reject_count": ("reject_count", "int"),
    "fault_code": ("fault_code", "auto"),
    "temperature": ("temperature", "float"),
    "pressure": ("pressure", "float"),
    "speed": ("speed", "float"),
    "current": ("current", "float"),
    "vibration": ("vibration", "float"),
    "flow": ("flow", "float"),
}
ALL_DAY = {"shifts": [{"name": "day", "start": "00:00", "end": "00:00", "target": 20000}]}


def machine_ids(machines: int) -> list[tuple[str, str]]:
    """(line id, machine id) of every machine of a generated plant."""
    return [(f"line-{i // PER_LINE + 1}", f"m{i + 1:04d}") for i in range(machines)]


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"linemon-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def mosquitto() -> Iterator[Mosquitto]:
    """The test suite's broker with the shipped config's in-flight window for MQTT 3.1.1
    clients (deploy/mosquitto/mosquitto.conf); MQTT 5 clients bring their own."""
    with workdir("mosquitto") as root:
        broker = ConfiguredMosquitto(root, settings={"max_inflight_messages": "256"})
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@contextlib.contextmanager
def influxd() -> Iterator[InfluxServer]:
    """A real influxd on a free port, onboarded, with the bench buckets; the token is in
    TOKEN_ENV for linemon's config."""
    binary = find_influxd()
    if binary is None:
        raise RuntimeError("influxd is not built; run `make services` "
                           "(deploy/influxdb/build-influxd.sh)")
    with workdir("influxd") as root:
        server = InfluxServer(binary, root)
        server.start()
        try:
            server.onboard()
            for name in (BUCKET, f"{BUCKET}_1m"):
                server.api("POST", "/api/v2/buckets", {
                    "orgID": server.org_id, "name": name,
                    "retentionRules": [{"type": "expire", "everySeconds": 0}]})
            os.environ[TOKEN_ENV] = server.token
            yield server
        finally:
            server.stop()


def influx_backend(url: str) -> dict[str, Any]:
    """The historian config for the bench influxd (its token in TOKEN_ENV)."""
    return {"kind": "influxdb", "url": url, "org": "linemon-test", "bucket": BUCKET,
            "token_env": TOKEN_ENV}


def plant_config(*, machines: int, data_dir: Path, mqtt_port: int | None = None,
                 opcua_endpoint: str | None = None, influx_url: str | None = None,
                 client_id: str = "linemon-bench", tags_per_machine: int = len(TAGS),
                 publishing_interval_ms: int = 250) -> PlantConfig:
    """A plant of `machines` machines on one source (MQTT when `mqtt_port`, else OPC-UA),
    with the InfluxDB historian at `influx_url` when given, else SQLite."""
    assert (mqtt_port is None) != (opcua_endpoint is None)
    if mqtt_port is not None:
        source: dict[str, Any] = {"kind": "mqtt", "name": "gateway", "host": "127.0.0.1",
                                  "port": mqtt_port, "protocol": "5", "qos": 1,
                                  "client_id": client_id, "session_expiry_s": 3600}
    else:
        source = {"kind": "opcua", "name": "plc", "endpoint": opcua_endpoint,
                  "mode": "subscription", "publishing_interval_ms": publishing_interval_ms,
                  "watchdog_interval_s": 5.0, "timeout_s": 10.0}
    lines: dict[str, list[dict[str, Any]]] = {}
    signals = list(TAGS.items())[:tags_per_machine]
    for line, machine in machine_ids(machines):
        tags: dict[str, Any] = {}
        for signal, (name, kind) in signals:
            if mqtt_port is not None:
                tags[signal] = {"topic": f"plant/{{line}}/{{machine}}/{name}", "type": kind}
            else:
                tags[signal] = {"node": f"nsu={NAMESPACE};s={line}.{machine}.{name}",
                                "type": kind}
        lines.setdefault(line, []).append({
            "id": machine, "source": source["name"], "ideal_cycle_time_s": 2.0, "tags": tags})
    backend = (influx_backend(influx_url) if influx_url is not None
               else {"kind": "sqlite", "path": str(data_dir / "history.sqlite")})
    data = {
        "site": {"name": "Bench", "timezone": "UTC"},
        "calendar": ALL_DAY,
        "sources": [source],
        "lines": [{"id": line, "machines": ms} for line, ms in lines.items()],
        "historian": {"backend": backend, "spool": {"path": str(data_dir / "spool.sqlite")}},
    }
    config = PlantConfig.model_validate(data)
    problems = cross_check(config)
    if problems:
        raise ValueError(f"generated plant is invalid: {problems}")
    return config
