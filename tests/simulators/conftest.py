"""Fixtures for the simulator tests: an MQTT recorder on the shared mosquitto fixture
(tests/conftest.py), and the scripted scenario."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from simulators import Scenario
from tests.simulators.sim_helpers import MqttRecorder, scripted_dict
from tests.support.services import Mosquitto


@pytest.fixture
def mqtt_recorder(mosquitto: Mosquitto) -> Iterator[Callable[..., MqttRecorder]]:
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
