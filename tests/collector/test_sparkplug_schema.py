"""Our Sparkplug B schema, held against the official one on payloads captured from the wire.

The official schema is the protobuf code generated from Eclipse Tahu's sparkplug_b.proto
that ships in the mqtt-spb-wrapper wheel. It is fetched with pip into ~/.cache/linemon at
test time, never committed, and imported by path.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collector.sources.sparkplug_schema import (
    INT32,
    INT64,
    Payload,
    metric_value,
    rebirth_request,
)
from simulators import SimulatedPlant
from simulators.sparkplug.schema import Payload as SimulatorPayload
from tests.collector.test_sparkplug import Spy
from tests.support.plants import eventually, quiet_scenario
from tests.support.services import Mosquitto

WHEEL = "mqtt-spb-wrapper==2.1.2"
PB2 = "mqtt_spb_wrapper/spb_protobuf/sparkplug_b_pb2.py"
CACHE = Path.home() / ".cache" / "linemon" / "sparkplug-official"


@pytest.fixture(scope="module")
def official() -> ModuleType:
    target = CACHE / "sparkplug_b_pb2.py"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               WHEEL, "-d", str(CACHE)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"pip download {WHEEL} failed: {done.stderr}"
        (wheel,) = CACHE.glob("mqtt_spb_wrapper-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(PB2))
    spec = importlib.util.spec_from_file_location("official_sparkplug_b_pb2", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers sparkplug_b.proto in protobuf's default pool
    return module


def official_value(metric: Any) -> Any:
    kind = metric.WhichOneof("value")
    value = getattr(metric, kind) if kind else None
    if metric.datatype in (1, 2, 3) and kind == "int_value" and value >= 2**31:
        value -= 2**32
    if metric.datatype == 4 and kind == "long_value" and value >= 2**63:
        value -= 2**64
    return value


def assert_same(data: bytes, theirs: Any) -> None:
    ours = Payload.FromString(data)
    assert (ours.timestamp, ours.seq) == (theirs.timestamp, theirs.seq)
    assert len(ours.metrics) == len(theirs.metrics)
    datatypes: dict[int, int] = {}
    for mine, their in zip(ours.metrics, theirs.metrics, strict=True):
        assert (mine.name, mine.alias, mine.timestamp, mine.datatype, mine.is_null) == (
            their.name, their.alias, their.timestamp, their.datatype, their.is_null)
        datatypes[their.alias] = their.datatype or datatypes.get(their.alias, 0)
        assert metric_value(mine, datatypes[their.alias]) == official_value(their)
    # what we skip (properties) survives a round trip, only moved behind the known fields
    assert type(theirs).FromString(ours.SerializeToString()) == theirs


async def test_captured_payloads_decode_alike(official: ModuleType,
                                              mosquitto: Mosquitto) -> None:
    spy = Spy(mosquitto.port)
    plant = SimulatedPlant(quiet_scenario(), speed=20.0, mqtt_host="127.0.0.1",
                           mqtt_port=mosquitto.port, mqtt_mode="sparkplug",
                           realtime_forever=True)
    await plant.start()
    try:
        await eventually(lambda: len(spy.on("DDATA")) >= 5, 15, "some DDATA")
    finally:
        await plant.stop()
        await eventually(lambda: spy.on("NDEATH"), 10, "the NDEATH")
        spy.close()
    captured = {m.topic.split("/")[2]: [] for m in spy.messages}
    for message in spy.messages:
        captured[message.topic.split("/")[2]].append(message.payload)
    assert {"NBIRTH", "DBIRTH", "DDATA", "NDEATH"} <= captured.keys()
    for kind, payloads in captured.items():
        for data in payloads:
            theirs = official.Payload.FromString(data)
            assert_same(data, theirs)
            # the simulator's encoder writes what the official schema reads back identically
            assert theirs.SerializeToString() == SimulatorPayload.FromString(data) \
                .SerializeToString() == data, kind
    dbirth = official.Payload.FromString(captured["DBIRTH"][0])
    assert dbirth.metrics[0].properties.keys or any(m.properties.keys for m in dbirth.metrics)


def test_our_rebirth_request_and_signed_values(official: ModuleType) -> None:
    request = official.Payload.FromString(rebirth_request(int(time.time() * 1000)))
    (metric,) = request.metrics
    assert (metric.name, metric.datatype, metric.boolean_value) == (
        "Node Control/Rebirth", 11, True)

    theirs = official.Payload(timestamp=1, seq=7)
    theirs.metrics.add(name="a", alias=1, datatype=INT32, int_value=(-5) & 0xFFFFFFFF)
    theirs.metrics.add(name="b", alias=2, datatype=INT64, long_value=(-7) & (2**64 - 1))
    theirs.metrics.add(name="c", alias=3, datatype=10, double_value=2.5)
    theirs.metrics.add(name="d", alias=4, datatype=12, is_null=True)
    data = theirs.SerializeToString()
    assert_same(data, theirs)
    assert [metric_value(m, m.datatype) for m in Payload.FromString(data).metrics] == [
        -5, -7, 2.5, None]
