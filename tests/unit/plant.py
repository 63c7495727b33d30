"""A small plant config for engine tests, built in code so each test shows what matters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from linemon.config import PlantConfig
from linemon.model import Quality, Sample

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00 UTC


def plant(machines: list[dict[str, Any]] | None = None, **overrides: Any) -> PlantConfig:
    data: dict[str, Any] = {
        "site": {"name": "test", "timezone": "UTC"},
        "calendar": {"shifts": [
            {"name": "early", "start": "06:00", "end": "14:00", "target": 1000,
             "breaks": [{"start": "09:00", "end": "09:30"}]},
            {"name": "late", "start": "14:00", "end": "22:00"},
            {"name": "night", "start": "22:00", "end": "06:00"},
        ]},
        "sources": [{"kind": "mqtt", "name": "gw"}],
        "reason_codes": {"17": "Jam"},
        "lines": [{"id": "l1", "machines": machines or [machine("m1")]}],
    }
    data.update(overrides)
    return PlantConfig.model_validate(data)


def machine(mid: str, *, state: bool = True, **extra: Any) -> dict[str, Any]:
    tags = {"good_count": {"topic": f"t/{mid}/good"}, "reject_count": {"topic": f"t/{mid}/rej"},
            "fault_code": {"topic": f"t/{mid}/fault"}}
    if state:
        tags["state"] = {"topic": f"t/{mid}/state"}
    return {"id": mid, "source": "gw", "ideal_cycle_time_s": 2.0, "tags": tags, **extra}


def sample(machine: str, signal: str, value: Any, at: datetime,
           quality: Quality = Quality.GOOD) -> Sample:
    return Sample(machine, signal, value, at, at, quality, "gw")
