"""Shared fixtures: real brokers on free ports, started and stopped by the test run."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from linemon import event_loop
from tests.support.influx import BUILD_SCRIPT, InfluxServer, find_influxd
from tests.support.services import Mosquitto


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the loop `linemon run` uses (uvloop), not asyncio's."""
    return {"linemon": event_loop.new_event_loop}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def persistent_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto", persistence=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxd() -> Iterator[InfluxServer]:
    """One real influxd 2.x for the session, onboarded; a missing binary FAILS, never skips."""
    binary = find_influxd()
    if binary is None:
        pytest.fail(
            f"influxd 2.x not found. Build it once with `bash {BUILD_SCRIPT}` (it caches the "
            "binary in ~/.cache/linemon/influxd-<version>/influxd), or point LINEMON_INFLUXD "
            "at a binary. `make test` does this first.", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="linemon-influxd-"))
    server = InfluxServer(binary, root)
    server.start()
    try:
        server.onboard()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
