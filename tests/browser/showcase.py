"""The plant the screenshots show: two lines, three hours into a shift, a realistic mess.

Made the way tests/api/plant.py makes its hour: samples with explicit timestamps go
through `Linemon.ingest` (engine + historian), the engine is ticked at the same times,
so every figure on the pages is what the real pipeline computes. Deterministic: the same
script gives the same pictures (only the date moves with the day they are taken).

At NOW, line 1 has a welder down (tool break, an alert firing), the booth in a colour
change, inspection starved behind the welder, and the press throwing rejects (a defect
alert); line 2 runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from linemon.app import Linemon
from linemon.config import PlantConfig
from linemon.model import Quality, Sample
from tests.api.plant import PlantClock
from tests.support.services import free_port


def _base(now: datetime) -> datetime:
    """The latest shift start (06, 14, 22 UTC) at least 4 h ago: the script's 3 h fit."""
    t = (now - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    while t.hour not in (6, 14, 22):
        t -= timedelta(hours=1)
    return t


BASE = _base(datetime.now(UTC))
MINUTES = 190
NOW = BASE + timedelta(minutes=MINUTES)

STATE = {"run": 1, "starved": 2, "blocked": 3, "down": 4, "changeover": 5, "planned": 6}


@dataclass(frozen=True)
class Machine:
    id: str
    name: str
    ict: float  # ideal cycle time, s
    rate: int  # good parts a running minute (a bit under 60 / ict: speed loss)
    reject_every: int  # one reject every this many running minutes
    # (minute after BASE, state, reason code); each lasts until the next
    script: tuple[tuple[float, str, int], ...]


def _micro(at: float, code: int, seconds: int) -> tuple[tuple[float, str, int], ...]:
    return ((at, "down", code), (at + seconds / 60, "run", 0))


LINES: dict[str, tuple[str, list[Machine]]] = {
    "line-1": ("Assembly Line 1", [
        Machine("press-1", "Press 1", 3.0, 18, 9, (
            (0, "run", 0), (34, "down", 23), (52, "run", 0), *_micro(70, 17, 20),
            *_micro(95, 17, 15), *_micro(140, 17, 25), (160, "down", 19), (166, "run", 0))),
        Machine("weld-1", "Welder 1", 3.3, 17, 11, (
            (0, "run", 0), *_micro(48, 17, 18), (80, "down", 55), (92, "run", 0),
            (120, "down", 0), (127, "run", 0), (184, "down", 23))),
        Machine("paint-1", "Paint Booth 1", 3.2, 17, 4, (
            (0, "run", 0), (60, "changeover", 6), (75, "run", 0), (100, "down", 42),
            (109, "run", 0), (182, "changeover", 6))),
        Machine("inspect-1", "Inspection 1", 2.6, 20, 12, (
            (0, "run", 0), (36, "starved", 0), (53, "run", 0), (130, "down", 19),
            (134, "run", 0), (186, "starved", 0))),
        Machine("pack-1", "Packer 1", 3.0, 16, 30, (
            (0, "run", 0), (110, "down", 31), (122, "run", 0), (150, "down", 17),
            (155, "run", 0), (170, "down", 0), (173, "run", 0))),
    ]),
    "line-2": ("Machining Line 2", [
        Machine("cnc-2", "CNC 2", 4.0, 14, 15, (
            (0, "run", 0), (90, "down", 41), (118, "run", 0))),
        Machine("wash-2", "Washer 2", 3.5, 14, 40, ((0, "run", 0), *_micro(63, 61, 22))),
        Machine("pack-2", "Packer 2", 3.6, 13, 30, (
            (0, "run", 0), (140, "down", 61), (146, "run", 0))),
    ]),
}
DEFECT_BURST = ("press-1", 186)  # from here on, a quarter of its parts are rejects

KEYS = {  # name -> (role, lines, kiosk)
    "board-line1": ("viewer", ["line-1"], True),
    "maintenance": ("maintenance", None, False),
    "supervisor": ("supervisor", None, False),
}


def key_of(name: str) -> str:
    return f"showcase-{name}-key-0123456789"


def plant_config(data_dir: Path) -> PlantConfig:
    keys = []
    for name, (role, lines, kiosk) in KEYS.items():
        env = "LINEMON_SHOWCASE_KEY_" + name.upper().replace("-", "_")
        os.environ[env] = key_of(name)
        keys.append({"name": name, "role": role, "key_env": env, "kiosk": kiosk,
                     **({"lines": lines} if lines else {})})
    tags = ("state", "good_count", "reject_count", "fault_code")
    lines = [{"id": lid, "name": name, "machines": [
        {"id": m.id, "name": m.name, "source": "gw", "ideal_cycle_time_s": m.ict,
         "tags": {t: {"topic": f"plant/{lid}/{m.id}/{t}"} for t in tags}} for m in machines]}
        for lid, (name, machines) in LINES.items()]
    return PlantConfig.model_validate({
        "site": {"name": "Demo Plant", "timezone": "UTC"},
        "calendar": {"shifts": [
            {"name": name, "start": start, "end": end, "target": 8000}
            for name, start, end in (("early", "06:00", "14:00"), ("late", "14:00", "22:00"),
                                     ("night", "22:00", "06:00"))]},
        "sources": [{"kind": "mqtt", "name": "gw", "port": free_port()}],  # never started
        "reason_codes": {"5": "Die change", "6": "Colour change", "17": "Jam",
                         "19": "Sensor misread", "23": "Tool break", "31": "Material shortage",
                         "41": "Hydraulic leak", "42": "Overheat", "55": "Misalignment",
                         "61": "Conveyor stall"},
        "lines": lines,
        "historian": {"backend": {"kind": "sqlite", "path": str(data_dir / "history.sqlite")},
                      "spool": {"path": str(data_dir / "spool.sqlite")}},
        "api": {"keys": keys},
    })


def _state_at(machine: Machine, minute: float) -> str:
    current = "run"
    for start, state, _ in machine.script:
        if start <= minute:
            current = state
    return current


def _samples() -> list[tuple[float, list[tuple[str, str, Any]]]]:
    """(minute, [(machine, signal, value)]) in time order: state changes, and every
    minute each machine's cumulative counters."""
    steps: dict[float, list[tuple[str, str, Any]]] = {}
    machines = [m for _, ms in LINES.values() for m in ms]
    for m in machines:
        for minute, state, code in m.script:
            steps.setdefault(minute, []).extend(
                [(m.id, "fault_code", code), (m.id, "state", STATE[state])])
    good = dict.fromkeys((m.id for m in machines), 0)
    reject = dict.fromkeys(good, 0)
    for minute in range(1, MINUTES):
        for m in machines:
            if _state_at(m, minute - 0.5) != "run":
                continue
            bursting = m.id == DEFECT_BURST[0] and minute >= DEFECT_BURST[1]
            good[m.id] += m.rate - (5 if bursting else 0)
            reject[m.id] += 5 if bursting else int(minute % m.reject_every == 0)
        steps.setdefault(minute, []).extend(
            [(mid, sig, n) for mid in good
             for sig, n in (("good_count", good[mid]), ("reject_count", reject[mid]))])
    return sorted(steps.items())


async def play(lm: Linemon, clock: PlantClock) -> None:
    for minute, points in _samples():
        at = BASE + timedelta(minutes=minute)
        clock.now = at
        await lm.ingest([Sample(mid, sig, value, at, at, Quality.GOOD, "gw")
                         for mid, sig, value in points])
        await lm.publish(lm.engine.on_tick(at))
    clock.now = NOW
    await lm.publish(lm.engine.on_tick(NOW))
    assert await lm.historian.flush(30), "the historian did not take the showcase history"


def showcase_linemon(data_dir: Path) -> tuple[Linemon, PlantClock]:
    clock = PlantClock(BASE)
    return Linemon(plant_config(data_dir), clock), clock
