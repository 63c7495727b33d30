"""The tags a simulated machine exposes: state codes, signal names and their protocol spellings.

This is the contract the collectors are written against; keep names and codes stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from functools import lru_cache


class StateCode(IntEnum):
    """Value of the `StateCode` tag; the `State` tag carries the lowercase name."""

    OFF = 0  # PLC restarting / no program
    RUNNING = 1
    STARVED = 2  # waiting for input
    BLOCKED = 3  # output buffer full
    FAULT = 4  # unplanned stop (breakdown or micro-stop); FaultCode says why
    CHANGEOVER = 5
    PLANNED_STOP = 6  # breaks, planned maintenance, no shift

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One tag of a machine: its MQTT/JSON name, OPC-UA/Sparkplug name, type and unit."""

    name: str  # snake_case, used in MQTT topics and JSON payloads
    tag: str  # PascalCase, OPC-UA BrowseName and Sparkplug metric name
    kind: str  # "string" | "int32" | "uint32" | "double"
    unit: str | None = None  # engineering unit for analog values


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("state_code", "StateCode", "int32"),
    SignalSpec("state", "State", "string"),
    SignalSpec("fault_code", "FaultCode", "int32"),
    SignalSpec("good_count", "GoodCount", "uint32"),
    SignalSpec("reject_count", "RejectCount", "uint32"),
    SignalSpec("speed", "Speed", "double", "parts/min"),
    SignalSpec("temperature", "Temperature", "double", "degC"),
    SignalSpec("pressure", "Pressure", "double", "bar"),
)
SIGNAL_BY_NAME: dict[str, SignalSpec] = {s.name: s for s in SIGNALS}
SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)

Value = int | float | str


@dataclass(frozen=True, slots=True)
class Change:
    """One tag of one machine taking a new value at a simulated instant (ms since epoch, UTC)."""

    line: str
    machine: str
    signal: str
    value: Value
    t_ms: int


def to_datetime(t_ms: int) -> datetime:
    """Simulated epoch milliseconds to an aware UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t_ms)


def to_ms(ts: datetime) -> int:
    """Aware datetime to epoch milliseconds (naive datetimes are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def iso_ms(t_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2024-03-04T05:00:00.000Z."""
    day, ms = divmod(t_ms, 86_400_000)
    seconds, millis = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    return f"{_day(day)}T{minutes // 60:02d}:{minutes % 60:02d}:{sec:02d}.{millis:03d}Z"


@lru_cache(maxsize=64)
def _day(day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%d")
