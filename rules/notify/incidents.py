"""Incidents: the alerts one route sent together, how far their escalation went, who heard.

An incident outlives a restart. The engine keeps its alerts in memory, so after a restart
a stop that is still on fires again as a new alert occurrence; without memory, its
supervisor would be called again from level 0. The dispatcher therefore reports every
incident change as an `IncidentRecord`, the notifier keeps the records in the outbox
file, and on start the open ones come back *dormant*: when the same fingerprint fires
again on the same route within `resume_window_s`, it joins its old incident (same id,
same idempotency keys, same escalation step and recipients) instead of starting anew.
Dormant incidents nobody claims in that window are closed without a message: their
alerts ended while linemon was down, and nothing is known about when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from linemon.model import Alert
from rules.notify.routing import Recipient


def sendable(alert: Alert) -> bool:
    """Wants someone: firing, neither inhibited nor silenced, not acknowledged."""
    return alert.notifiable and alert.acknowledged_by is None


@dataclass(slots=True)
class Incident:
    id: str
    route: int
    alerts: dict[str, Alert]
    step: int = -1  # the last escalation step sent; -1: nothing yet (forming, quiet hours)
    next_at: datetime | None = None
    acked: bool = False
    notified: dict[tuple[str, str], tuple[Recipient, str]] = field(default_factory=dict)

    def live(self) -> list[Alert]:
        return [a for a in self.alerts.values() if sendable(a)]


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident as the outbox keeps it (`open` False: it is over, forget it)."""

    id: str
    route: str  # the route's name: indexes move when the config is edited
    fingerprints: tuple[str, ...]
    step: int
    next_at: datetime | None
    acked: bool
    notified: tuple[tuple[str, str, str, str], ...]  # channel, recipient, address, first key
    open: bool = True

    @classmethod
    def of(cls, inc: Incident, route: str, *, open_: bool = True) -> IncidentRecord:
        return cls(inc.id, route, tuple(inc.alerts), inc.step, inc.next_at, inc.acked,
                   tuple((r.channel, r.id, r.address, key) for r, key in inc.notified.values()),
                   open_)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "route": self.route, "fingerprints": list(self.fingerprints),
                "step": self.step, "acked": self.acked, "open": self.open,
                "next_at": self.next_at.isoformat() if self.next_at else None,
                "notified": [list(n) for n in self.notified]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentRecord:
        next_at = datetime.fromisoformat(data["next_at"]) if data["next_at"] else None
        return cls(data["id"], data["route"], tuple(data["fingerprints"]), data["step"],
                   next_at, data["acked"], tuple(tuple(n) for n in data["notified"]),
                   data["open"])

    def revive(self, route: int) -> Incident:
        inc = Incident(self.id, route, {}, step=self.step, next_at=self.next_at,
                       acked=self.acked)
        for channel, recipient, address, key in self.notified:
            inc.notified[(channel, recipient)] = (Recipient(channel, recipient, address), key)
        return inc


class Dormant:
    """Open incidents from before a restart, waiting for their alerts to fire again."""

    def __init__(self) -> None:
        self._by_alert: dict[tuple[int, str], IncidentRecord] = {}
        self.until: datetime | None = None

    def restore(self, records: list[tuple[int, IncidentRecord]], until: datetime) -> None:
        for route, record in records:
            for fp in record.fingerprints:
                self._by_alert[(route, fp)] = record
        self.until = until if self._by_alert else None

    def claim(self, route: int, fingerprint: str) -> IncidentRecord | None:
        return self._by_alert.pop((route, fingerprint), None)

    def forget(self, incident: str) -> None:
        for key in [k for k, r in self._by_alert.items() if r.id == incident]:
            del self._by_alert[key]

    def expire(self, now: datetime) -> list[IncidentRecord]:
        """The records nobody claimed once the window is over (each once)."""
        if self.until is None or now < self.until:
            return []
        left = {r.id: r for r in self._by_alert.values()}
        self._by_alert.clear()
        self.until = None
        return list(left.values())
