"""Fixtures for the simulator tests: a real mosquitto on a free port and an MQTT recorder.

The broker fixture is meant to move to tests/conftest.py later.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulators import Scenario
from tests.simulators.sim_helpers import Broker, MqttRecorder, free_port, scripted_dict

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A private mosquitto (anonymous, no persistence) on a free port, for one test."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log.name)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_listening(proc: subprocess.Popen, port: int, log_name: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start, see {log_name}") from None
            time.sleep(0.02)


@pytest.fixture
def mqtt_recorder(mosquitto: Broker) -> Iterator[Callable[..., MqttRecorder]]:
    """`mqtt_recorder("plant/#")` -> a subscriber recording every message on those topics."""
    made: list[MqttRecorder] = []

    def make(*topics: str) -> MqttRecorder:
        recorder = MqttRecorder(mosquitto, topics or ("#",))
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


@pytest.fixture
def scripted() -> Scenario:
    return Scenario.from_dict(scripted_dict())
