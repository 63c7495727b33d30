"""The shipped scenarios, each replayed through the engine once per test session."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from simulators import load_scenario
from tests.accuracy.replay import Replay, plant_config, scenario_window
from tests.support.plants import REPO

SCENARIOS = REPO / "simulators" / "scenarios"
# name -> hours to replay (None: the whole scenario). The demo runs around the clock: its
# first three hours hold every scripted event.
SHIPPED: dict[str, float | None] = {
    "calm-shift": None, "bad-shift": None, "bottleneck": None, "night-shift": None, "demo": 3,
}


@dataclass
class Replayed:
    name: str
    replay: Replay
    truth: dict[str, Any]
    seconds: float  # wall time the replay took


@cache
def replayed(name: str) -> Replayed:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    start, end = scenario_window(scenario, SHIPPED[name])
    began = time.perf_counter()
    replay = Replay(scenario, start, end, plant_config(scenario)).run()
    return Replayed(name, replay, replay.truth(), time.perf_counter() - began)
