"""Routing: which routes an alert takes, and who is behind a target right now.

Routes are tried in order; the first that matches wins unless it says `continue: true`
(Alertmanager's rule). A roster is resolved at the moment a level is sent, so an
escalation that outlives a shift change reaches the new shift's people. Pure: the
caller passes the shift name.
"""

from __future__ import annotations

from dataclasses import dataclass

from linemon.model import Alert
from rules.notify.config import (
    ROSTER_PREFIX,
    EscalationLevel,
    NotificationsConfig,
    RouteConfig,
    Target,
)


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str
    id: str  # a person id, or the channel's name for its own destination
    address: str  # ntfy topic, e-mail address; "" for webhook and mqtt


class Router:
    def __init__(self, config: NotificationsConfig) -> None:
        self.config = config
        self.people = {p.id: p for p in config.people}
        self._levels = [self._plan(route) for route in config.routes]

    def routes_for(self, alert: Alert, shift: str | None) -> list[int]:
        """Indexes of the routes the alert takes."""
        taken: list[int] = []
        for i, route in enumerate(self.config.routes):
            if _matches(route, alert, shift):
                taken.append(i)
                if not route.continue_:
                    break
        return taken

    def levels(self, route: int) -> list[EscalationLevel]:
        return self._levels[route]

    def steps(self, route: int) -> int:
        """How many escalation steps the route sends at most (levels x (repeat + 1))."""
        r = self.config.routes[route]
        repeat = self.config.escalation[r.escalation].repeat if r.escalation else 0
        return len(self._levels[route]) * (repeat + 1)

    def recipients(self, target: Target, shift: str | None) -> list[Recipient]:
        channel = self.config.channel(target.channel)
        if channel is None:
            return []
        if channel.kind in ("webhook", "mqtt"):
            return [Recipient(channel.name, channel.name, "")]
        if not target.to:
            if channel.kind == "ntfy":
                return [Recipient(channel.name, channel.name, channel.topic or "")]
            return [Recipient(channel.name, channel.name, addr) for addr in channel.to]
        found: list[Recipient] = []
        for pid in self._people(target.to, shift):
            person = self.people.get(pid)
            if person is None:
                continue
            address = person.ntfy_topic if channel.kind == "ntfy" else person.email
            if address:
                recipient = Recipient(channel.name, pid, address)
                if recipient not in found:
                    found.append(recipient)
        return found

    def _people(self, names: list[str], shift: str | None) -> list[str]:
        out: list[str] = []
        for name in names:
            if not name.startswith(ROSTER_PREFIX):
                out.append(name)
                continue
            roster = self.config.rosters.get(name.removeprefix(ROSTER_PREFIX))
            if roster is None:
                continue
            on_duty = roster.shifts.get(shift) if shift is not None else None
            out += on_duty if on_duty is not None else roster.otherwise
        return out

    def _plan(self, route: RouteConfig) -> list[EscalationLevel]:
        if route.escalation is not None:
            policy = self.config.escalation.get(route.escalation)
            return list(policy.levels) if policy else []
        return [EscalationLevel(notify=list(route.notify))]


def _matches(route: RouteConfig, alert: Alert, shift: str | None) -> bool:
    m = route.match
    labels = alert.labels
    if m.lines is not None and labels.get("line") not in m.lines:
        return False
    if m.machines is not None and labels.get("machine") not in m.machines:
        return False
    if m.rules is not None and not {alert.rule_id, alert.rule_id.split(":", 1)[0]} & set(m.rules):
        return False
    if m.severities is not None and alert.severity not in m.severities:
        return False
    return m.shifts is None or (shift is not None and shift in m.shifts)
