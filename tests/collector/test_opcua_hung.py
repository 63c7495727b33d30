"""A hung OPC-UA server (TCP open, no answers) is detected, not waited for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.collector.harness import Recorder, demo_machines, plant_config, source_named, supervised
from tests.support.plants import DEMO_SCENARIO, REPO, eventually
from tests.support.services import free_port, wait_for_port

DETECT_WITHIN_S = 10.0


def opcua(endpoint: str) -> dict[str, object]:
    return {"kind": "opcua", "name": "plc-line1", "endpoint": endpoint,
            "watchdog_interval_s": 1.0, "timeout_s": 2.0}


async def test_a_server_that_accepts_and_never_answers_is_given_up_on() -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)  # silent
    port = server.sockets[0].getsockname()[1]
    config = plant_config([opcua(f"opc.tcp://127.0.0.1:{port}/")], demo_machines("plc-line1"))
    source = source_named(config, "plc-line1")
    started = time.monotonic()
    try:
        async with supervised(source, Recorder()):
            await eventually(lambda: source.stats.reconnects >= 1, DETECT_WITHIN_S,
                             "the connect attempt to give up")
            given_up = time.monotonic() - started
    finally:
        server.close()
    print(f"\nsilent server: connect given up after {given_up:.2f} s")
    assert "TimeoutError" in (source.stats.last_error or "")
    assert not source.stats.connected and source.stats.gaps == []


@pytest.fixture
def simulator_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The simulator's OPC-UA server in a process of its own, so that it can be frozen."""
    scenario = yaml.safe_load(DEMO_SCENARIO.read_text())
    scenario.update(random=False, timeline=[])
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    port = free_port()
    log = (tmp_path / "simulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--scenario", str(path), "--forever",
         "--opcua-port", str(port), "--log-level", "WARNING"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for_port(port, timeout_s=30)
        yield process, port
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait(10)
        log.close()


@pytest.mark.slow
async def test_a_server_that_stops_answering_is_detected(
        simulator_process: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = simulator_process
    config = plant_config([opcua(f"opc.tcp://127.0.0.1:{port}/")], demo_machines("plc-line1"))
    source, recorder = source_named(config, "plc-line1"), Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: source.stats.connected and recorder.samples, 20, "data")
        process.send_signal(signal.SIGSTOP)  # TCP stays open; nothing answers any more
        frozen = time.monotonic()
        await eventually(lambda: source.stats.gaps, DETECT_WITHIN_S, "the hang to be noticed")
        detected = time.monotonic() - frozen
        process.send_signal(signal.SIGCONT)
        await eventually(lambda: source.stats.connected, 20, "the server to be back")
    print(f"\nfrozen server detected after {detected:.2f} s: {source.stats.gaps[0][2]}")
    assert len(recorder.bad()) == len(source.tags)  # every tag marked bad at the hang
    assert source.stats.gaps[0][1] is not None  # closed when it answered again
