"""The demo plant pointed at test servers: the demo config, with ports and paths replaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from linemon.config import PlantConfig, cross_check
from simulators import Scenario

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "deploy" / "demo" / "plant.yaml"
DEMO_SCENARIO = REPO / "simulators" / "scenarios" / "demo.yaml"

T = TypeVar("T")


ALL_DAY = {"shifts": [{"name": "day", "start": "00:00", "end": "00:00", "target": 20000}]}


def quiet_scenario(*, random: bool = False, **changes: Any) -> Scenario:
    """The demo line with one all-day shift (tests must not depend on the hour they run at)
    and, by default, no random stops: only what a test scripts happens."""
    data = yaml.safe_load(DEMO_SCENARIO.read_text())
    data["calendar"] = {"timezone": "UTC", "shifts": [
        {k: v for k, v in shift.items() if k != "target"} for shift in ALL_DAY["shifts"]]}
    data["random"] = random
    data["timeline"] = []
    data.update(changes)
    return Scenario.from_dict(data)


def demo_config(*, opcua_endpoint: str, mqtt_port: int, data_dir: Path,
                mqtt_protocol: str = "5", page_after_s: float = 1.0,
                **changes: Any) -> PlantConfig:
    """`page_after_s`: a plant waits 30 s before a stop pages anyone (shorter ones are
    micro-stops); tests script short stops, so they page after `page_after_s`."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    for source in data["sources"]:
        if source["kind"] == "opcua":
            source["endpoint"] = opcua_endpoint
            source["watchdog_interval_s"] = 1.0
            source["timeout_s"] = 2.0
        else:
            source["port"] = mqtt_port
            source["protocol"] = mqtt_protocol
            source["client_id"] = f"linemon-test-{time.monotonic_ns()}"
    data["historian"] = {
        "backend": {"kind": "sqlite", "path": str(data_dir / "history.sqlite")},
        "spool": {"path": str(data_dir / "spool.sqlite")},
    }
    data["calendar"] = ALL_DAY
    data["site"]["timezone"] = "UTC"
    data["rules"] = {"machine_stop": {"after_s": page_after_s}}
    data.update(changes)
    config = PlantConfig.model_validate(data)
    assert not cross_check(config)
    return config


async def eventually(probe: Callable[[], T | None], timeout_s: float = 30.0,
                     what: str = "condition") -> T:
    """Poll until `probe` returns something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def next_event(queue: asyncio.Queue, kind: type[T], timeout_s: float = 30.0,
                     **match: Any) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind.__name__} matching {match} within {timeout_s}s")
        try:
            event = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            continue
        if isinstance(event, kind) and all(
            getattr(getattr(event, "event", event), k) == v for k, v in match.items()
        ):
            return event
