"""What every source is: a config model plus a class registered by kind.

A source connects, streams samples until its connection drops, then raises
`SourceDisconnected`. It never reconnects itself; the supervisor does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from linemon.config import LineConfig, MachineConfig, PlantConfig
from linemon.model import Sample

Emit = Callable[[list[Sample]], Awaitable[None]]


class SourceError(Exception):
    """A source could not do its job; the message says what to fix."""


class SourceDisconnected(SourceError):
    """The connection is gone; the supervisor will reconnect after a backoff."""


class SourceConfigError(SourceError):
    """A setting makes the source unusable (bad certificate, refused policy).

    Retrying soon won't help, so the supervisor waits its longest backoff.
    """


@dataclass(slots=True)
class SourceStats:
    """Counters the health and metrics endpoints read."""

    received: int = 0  # messages (MQTT) or values (OPC-UA) taken in
    emitted: int = 0  # samples handed on (durably spooled when `emit` returned)
    duplicates: int = 0
    # Refused payloads by reason; also `counter_backwards`, which is passed on but counted.
    rejected: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    connected: bool = False
    connected_since: datetime | None = None
    last_error: str | None = None
    last_message_at: dict[str, datetime] = field(default_factory=dict)  # per machine
    gaps: list[tuple[datetime, datetime | None, str]] = field(default_factory=list)
    rebirth_requests: int = 0  # Sparkplug B only
    monitored_items: int = 0  # OPC-UA subscriptions only: items in the current session
    # OPC-UA only: Publish responses our decoder left to asyncua's (opcua_decode.py)
    slow_decodes: int = 0


class RateLimitedLog:
    """One log line per incident kind per interval, with the count it stood for."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self._interval:
            self._suppressed[kind] += 1
            return
        self._last[kind] = now
        extra = self._suppressed.pop(kind, 0)
        suffix = f" (+{extra} more since last report)" if extra else ""
        self._logger.warning(message + suffix, *args)


class Source(Protocol):
    name: str
    stats: SourceStats
    machines: list[str]

    async def run(self, emit: Emit) -> None: ...

    def outage(self, at: datetime) -> list[Sample]:
        """Bad-quality samples for every tag, recording that from `at` nothing is known."""
        ...


SourceFactory = Callable[[Any, PlantConfig, list[tuple[LineConfig, MachineConfig]]], Source]
SOURCES: dict[str, SourceFactory] = {}


def register(kind: str) -> Callable[[SourceFactory], SourceFactory]:
    def add(factory: SourceFactory) -> SourceFactory:
        SOURCES[kind] = factory
        return factory

    return add


def build_sources(config: PlantConfig) -> list[Source]:
    # Importing the modules registers their kinds.
    from collector.sources import mqtt, opcua  # noqa: F401

    sources = []
    for source_config in config.sources:
        machines = [(ln, m) for ln, m in config.machines() if m.source == source_config.name]
        sources.append(SOURCES[source_config.kind](source_config, config, machines))
    return sources
