"""The API tests' plant: two lines, keys for every role, and one scripted hour of history.

History is made the real way: samples with explicit timestamps go through
`Linemon.ingest` (engine + historian spool), the engine is ticked at the same times, and
the historian is flushed, so the API reads what the real pipeline wrote.

The hour (minutes after BASE, which is a shift start in the recent past: InfluxDB keeps
only recent points):

    press-a1  run, down 10-15 (17 Jam), micro-stop 30:00-30:20 (23), down 50-58 (uncoded)
    weld-a2   run, changeover 20-35, down 40-44 (31), down from 60 (17), still open at NOW
    press-b1  run, down 25-27 (17)

NOW = BASE + 70 min. A running machine makes RATE good parts a minute; every tenth
minute, if it was running, one more part is a reject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from linemon.app import Linemon
from linemon.config import PlantConfig
from linemon.model import MachineState, Quality, Sample
from tests.support.services import free_port


def _base(now: datetime) -> datetime:
    """The latest shift start (06, 14, 22 UTC) at least 2 h before now."""
    t = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    while t.hour not in (6, 14, 22):
        t -= timedelta(hours=1)
    return t


BASE = _base(datetime.now(UTC))
NOW = BASE + timedelta(minutes=70)

ROLES = ("viewer", "operator", "maintenance", "supervisor", "admin")


@dataclass(frozen=True)
class KeySpec:
    name: str
    role: str
    lines: tuple[str, ...] | None = None
    kiosk: bool = False

    @property
    def env(self) -> str:
        return "LINEMON_TEST_KEY_" + self.name.upper().replace("-", "_")

    @property
    def key(self) -> str:
        return f"test-key-{self.name}-0123456789abcdef"


KEYS = (
    *(KeySpec(role, role) for role in ROLES),
    KeySpec("viewer-b", "viewer", ("line-b",)),
    KeySpec("operator-b", "operator", ("line-b",)),
    KeySpec("supervisor-b", "supervisor", ("line-b",)),
    KeySpec("kiosk-a", "viewer", ("line-a",), kiosk=True),
)
KEY = {k.name: k for k in KEYS}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY[name].key}"}


def set_key_env() -> None:
    for spec in KEYS:
        os.environ[spec.env] = spec.key


def _machine(mid: str, ict: float) -> dict[str, Any]:
    tags = {name: {"topic": f"t/{mid}/{name}"}
            for name in ("state", "good_count", "reject_count", "fault_code", "temperature")}
    return {"id": mid, "source": "gw", "ideal_cycle_time_s": ict, "tags": tags}


def plant_config(data_dir: Path, *, historian: Any = None, rules: dict[str, Any] | None = None,
                 notifications: dict[str, Any] | None = None, **api: Any) -> PlantConfig:
    set_key_env()
    keys = [{"name": k.name, "role": k.role, "key_env": k.env, "kiosk": k.kiosk,
             **({"lines": list(k.lines)} if k.lines else {})} for k in KEYS]
    data: dict[str, Any] = {
        "site": {"name": "api-test", "timezone": "UTC"},
        "calendar": {"shifts": [
            {"name": "early", "start": "06:00", "end": "14:00", "target": 9000},
            {"name": "late", "start": "14:00", "end": "22:00", "target": 9000},
            {"name": "night", "start": "22:00", "end": "06:00", "target": 9000},
        ]},
        # Nothing listens there; the tests never start the sources anyway.
        "sources": [{"kind": "mqtt", "name": "gw", "port": free_port()}],
        "reason_codes": {"17": "Jam", "23": "Tool break", "31": "Material shortage"},
        "lines": [
            {"id": "line-a", "name": "Line A", "end_machine": "weld-a2",
             "machines": [_machine("press-a1", 2.0), _machine("weld-a2", 2.5)]},
            {"id": "line-b", "name": "Line B", "machines": [_machine("press-b1", 2.0)]},
        ],
        "historian": historian or {
            "backend": {"kind": "sqlite", "path": str(data_dir / "history.sqlite")},
            "spool": {"path": str(data_dir / "spool.sqlite")},
        },
        "rules": rules or {},
        "api": {"keys": keys, **api},
    }
    if notifications is not None:
        data["notifications"] = notifications
    return PlantConfig.model_validate(data)


class PlantClock:
    """The plant's clock, moved by the test (never the wall clock)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- the scripted hour ------------------------------------------------------------------

M = timedelta(minutes=1)
STATE = {"run": 1, "down": 4, "changeover": 5}
RATE = {"press-a1": 25, "weld-a2": 20, "press-b1": 25}  # good parts a running minute
# machine -> [(start, state, fault code)] in minutes after BASE; each lasts to the next
SCHEDULE: dict[str, list[tuple[float, str, int]]] = {
    "press-a1": [(0, "run", 0), (10, "down", 17), (15, "run", 0), (30, "down", 23),
                 (30 + 20 / 60, "run", 0), (50, "down", 0), (58, "run", 0)],
    "weld-a2": [(0, "run", 0), (20, "changeover", 0), (35, "run", 0), (40, "down", 31),
                (44, "run", 0), (60, "down", 17)],
    "press-b1": [(0, "run", 0), (25, "down", 17), (27, "run", 0)],
}


def state_at(machine: str, minute: float) -> str:
    current = "run"
    for start, state, _ in SCHEDULE[machine]:
        if start <= minute:
            current = state
    return current


def running_minutes(machine: str, a: int, b: int) -> int:
    return sum(state_at(machine, m + 0.5) == "run" for m in range(a, b))


def scripted_samples() -> list[tuple[datetime, list[Sample]]]:
    """Batches of samples, in time order; a batch spans at most a second.

    Counters and the temperature are reported every 5 minutes, good and reject counts at
    the same instant (two parts events there must merge into one history point). Few
    batches keep the replay quick: every batch is two fsyncs in the spool.
    """
    points: list[tuple[timedelta, str, str, Any]] = []
    for machine, changes in SCHEDULE.items():
        for minute, state, fault in changes:
            points += [(minute * M, machine, "fault_code", fault),
                       (minute * M, machine, "state", STATE[state])]
    good = dict.fromkeys(SCHEDULE, 0)
    reject = dict.fromkeys(SCHEDULE, 0)
    for minute in range(0, 70, 5):  # parts at NOW itself would fall outside [BASE, NOW)
        for machine in SCHEDULE:
            good[machine] += RATE[machine] * running_minutes(machine, max(0, minute - 5), minute)
            points.append((minute * M, machine, "good_count", good[machine]))
            if minute % 10 == 0 and minute and state_at(machine, minute - 0.5) == "run":
                reject[machine] += 1
            points.append((minute * M, machine, "reject_count", reject[machine]))
        points.append((minute * M, "press-a1", "temperature", 60.0 + 4 * (minute // 5 % 2)))
    points.sort(key=lambda p: p[0])  # stable: a step's fault code stays before its state
    batches: list[tuple[datetime, list[Sample]]] = []
    for offset, machine, signal, value in points:
        at = BASE + offset
        if not batches or at - batches[-1][1][0].source_ts > timedelta(seconds=1):
            batches.append((at, []))
        batches[-1] = (at, batches[-1][1])  # the batch's clock: its newest sample
        batches[-1][1].append(Sample(machine, signal, value, at, at, Quality.GOOD, "gw"))
    return batches


async def play_history(lm: Linemon, clock: PlantClock) -> None:
    """Feed the scripted hour through the real pipeline, tick at every step, flush."""
    for at, samples in scripted_samples():
        clock.now = at
        await lm.ingest(samples)
        await lm.publish(lm.engine.on_tick(at))
    clock.now = NOW
    await lm.publish(lm.engine.on_tick(NOW))
    assert await lm.historian.flush(30), "the historian did not take the scripted hour"
    assert lm.engine.trackers["weld-a2"].state is MachineState.DOWN


def stop_id(machine: str, minute: float) -> str:
    return f"{machine}:{(BASE + timedelta(minutes=minute)).isoformat()}"
