"""What engines and API processes say to each other over MQTT when linemon is scaled out.

Topics, under `<prefix>/v1/<site>/` (the `v1` is the wire format's version: processes of
another version live side by side on the broker without reading each other's topics, and
a payload a process cannot read is counted, logged and skipped):

    lines/<line>/view       retained  the engine's live view of the line, its alerts and
                                      silences, about once a second
    lines/<line>/events     QoS 1     the engine's events as they happen (boards' changes)
    lines/<line>/commands   QoS 1     the API asks the line's engine to act (ack, silence,
                                      reason coding); the engine owns alerts and writes
    replies/<client>        QoS 1     the engine's answer to one command
    engines/<engine>        retained  which lines an engine runs; its will says offline

Payloads are JSON of the core dataclasses (pydantic validates them back into the same
types), so the API serves a remote line exactly as it serves its own engine's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from linemon.model import (
    Alert,
    AlertChanged,
    DowntimeEnded,
    DowntimeEvent,
    DowntimeStarted,
    Event,
    OeeSnapshot,
    PartsProduced,
    Silence,
    StateChanged,
)
from rules.engine import LineView

WIRE_VERSION = 1


@dataclass(frozen=True)
class Topics:
    prefix: str
    site: str

    @classmethod
    def of(cls, prefix: str, site_name: str) -> Topics:
        # A site's display name may hold spaces or slashes; a topic level must not.
        return cls(prefix, re.sub(r"[^A-Za-z0-9_.-]+", "-", site_name).strip("-") or "site")

    @property
    def root(self) -> str:
        return f"{self.prefix}/v{WIRE_VERSION}/{self.site}"

    def view(self, line: str) -> str:
        return f"{self.root}/lines/{line}/view"

    def events(self, line: str) -> str:
        return f"{self.root}/lines/{line}/events"

    def commands(self, line: str) -> str:
        return f"{self.root}/lines/{line}/commands"

    def replies(self, client: str) -> str:
        return f"{self.root}/replies/{client}"

    def engine(self, engine_id: str) -> str:
        return f"{self.root}/engines/{engine_id}"

    def line_of(self, topic: str) -> str | None:
        parts = topic[len(self.root) + 1:].split("/") if topic.startswith(self.root) else []
        return parts[1] if len(parts) == 3 and parts[0] == "lines" else None


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    v: Literal[1] = WIRE_VERSION


class LineState(Wire):
    """The retained view: everything the API's live routes need for one line."""

    engine: str
    view: LineView
    alerts: list[Alert]  # the line's active ones first, then its recently resolved
    active: int  # how many of `alerts` are active
    silences: list[Silence]


class EngineStatus(Wire):
    engine: str
    lines: list[str]
    online: bool
    at: datetime


Op = Literal["ack", "silence", "expire_silence", "code"]


class Command(Wire):
    id: str
    reply_to: str
    op: Op
    by: str
    at: datetime
    fingerprint: str | None = None
    silence: Silence | None = None
    silence_id: str | None = None
    downtime_id: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    note: str | None = None


Failure = Literal["no_alert", "no_downtime", "no_silence", "conflict", "history_unavailable",
                  "bad_command", "failed"]


class Reply(Wire):
    id: str
    error: Failure | None = None  # None: done
    detail: str | None = None
    alert: Alert | None = None
    silence: Silence | None = None
    downtime: DowntimeEvent | None = None


_EVENT_TYPES: dict[str, type[Any]] = {
    t.__name__: t for t in (StateChanged, DowntimeStarted, DowntimeEnded, PartsProduced,
                            AlertChanged, OeeSnapshot)}
_EVENT_ADAPTERS = {name: TypeAdapter(t) for name, t in _EVENT_TYPES.items()}


class EventBatch(Wire):
    engine: str
    events: list[tuple[str, dict[str, Any]]]  # (type name, fields)

    @classmethod
    def of(cls, engine: str, events: list[Event]) -> EventBatch:
        return cls(engine=engine, events=[
            (type(e).__name__, _EVENT_ADAPTERS[type(e).__name__].dump_python(e, mode="json"))
            for e in events])

    def decoded(self) -> list[Event]:
        """The events this process knows; a newer engine's new kinds are skipped."""
        return [_EVENT_ADAPTERS[name].validate_python(fields)
                for name, fields in self.events if name in _EVENT_ADAPTERS]
