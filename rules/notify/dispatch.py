"""The dispatcher: alert changes in, deliveries out. Grouping, escalation, resolved notices.

Pure, like the engine: every `now` comes from the caller (an event's `at` or a tick).

    firing, notifiable  -> joins a forming group (route, group_by labels) for `group_wait_s`
    group flushed       -> an incident: its alerts, sent as one message per recipient
    not acknowledged    -> the next escalation level after the level's `escalate_after_s`,
                           over the levels `repeat + 1` times, then silence
    acknowledged        -> escalation stops; queued firing messages are cancelled
    resolved            -> a resolved message to everyone the incident reached

An alert that is inhibited or silenced (a line stop explains it; a maintenance window)
leaves its forming group and pauses its incident's escalation. Quiet hours hold firing
messages back until they end; they do not drop them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from linemon.model import Alert, AlertChange, AlertChanged, AlertState
from rules.notify.config import NotificationsConfig
from rules.notify.incidents import Dormant, Incident, IncidentRecord, sendable
from rules.notify.message import (
    ACKNOWLEDGED,
    FIRING,
    RESOLVED,
    Message,
    brief,
    click_url,
    describe,
    idempotency_key,
    incident_id,
    worst,
)
from rules.notify.quiet import QuietSchedule
from rules.notify.routing import Recipient, Router
from rules.notify.tokens import AckSigner

log = logging.getLogger("linemon.notify")
ShiftAt = Callable[[datetime], str | None]
ACK_PATH = "/api/v1/alerts/ack-link/"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one recipient on one channel: one row of the outbox."""

    key: str
    incident: str
    transition: str
    step: int
    channel: str
    recipient: str
    address: str
    line: str | None
    fingerprints: tuple[str, ...]
    message: Message
    created_at: datetime
    token_nonce: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Queued firing messages of an incident are no longer wanted (it was acknowledged)."""

    incident: str
    reason: str


Intent = Delivery | Cancel


@dataclass(slots=True)
class _Forming:
    route: int
    flush_at: datetime
    alerts: dict[str, Alert] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, config: NotificationsConfig, *, timezone: str, shift_at: ShiftAt,
                 signer: AckSigner | None = None) -> None:
        self.config = config
        self.router = Router(config)
        self.quiet = QuietSchedule(config.quiet_hours, timezone)
        self.tz = ZoneInfo(timezone)
        self.shift_at = shift_at
        self.signer = signer
        self._forming: dict[tuple[int, tuple[str, ...]], _Forming] = {}
        self._incidents: dict[str, Incident] = {}
        self._of_alert: dict[str, set[str]] = {}
        self._dormant = Dormant()
        self._changed: dict[str, IncidentRecord] = {}  # for the outbox, since last taken

    # --- inputs ---------------------------------------------------------------------------

    def on_change(self, change: AlertChanged) -> list[Intent]:
        alert, now, fp = change.alert, change.at, change.alert.fingerprint
        for group in self._forming.values():
            if fp in group.alerts:
                if sendable(alert):
                    group.alerts[fp] = alert
                else:  # inhibited, silenced, acknowledged or gone before the group went out
                    del group.alerts[fp]
        out: list[Intent] = []
        for inc in self._incidents_of(alert):
            inc.alerts[fp] = alert
            out += self._update(inc, change.change, alert, now)
        if sendable(alert) and not self._known(alert):
            for route in self.router.routes_for(alert, self.shift_at(now)):
                record = self._dormant.claim(route, fp)
                if record is not None:  # it was already told before the restart
                    self._adopt(route, record, alert)
                    continue
                group_by = self.config.routes[route].group_by
                key = (route, tuple(alert.labels.get(label, "") for label in group_by))
                wait = timedelta(seconds=self.config.routes[route].group_wait_s)
                group = self._forming.setdefault(key, _Forming(route, now + wait))
                group.alerts[fp] = alert
        return out

    def on_tick(self, now: datetime) -> list[Intent]:
        out: list[Intent] = []
        for key, group in list(self._forming.items()):
            if group.flush_at <= now:
                del self._forming[key]
                members = [a for a in group.alerts.values() if sendable(a)]
                if members:
                    out += self._open(group.route, members, now)
        for inc in list(self._incidents.values()):
            if inc.next_at is not None and inc.next_at <= now:
                out += self._escalate(inc, now)
        for record in self._dormant.expire(now):
            log.info("incident %s: its alerts did not come back after the restart; closed",
                     record.id)
            self._changed[record.id] = replace(record, open=False)
        return out

    def restore(self, records: list[IncidentRecord], now: datetime) -> None:
        """Open incidents from before a restart: alerts firing again on the same route
        within `outbox.resume_window_s` continue them instead of starting over."""
        names = {self.config.route_name(i): i for i in range(len(self.config.routes))}
        known = [(names[r.route], r) for r in records if r.open and r.route in names]
        for record in records:
            if record.open and record.route not in names:  # the route is gone from the config
                self._changed[record.id] = replace(record, open=False)
        window = timedelta(seconds=self.config.outbox.resume_window_s)
        self._dormant.restore(known, now + window)

    def take_records(self) -> list[IncidentRecord]:
        """Incident changes since the last call, for the outbox to keep."""
        changed, self._changed = list(self._changed.values()), {}
        return changed

    def covering(self, incident: str) -> set[str]:
        """Fingerprints of an open incident's alerts (an ack link acks these)."""
        inc = self._incidents.get(incident)
        return set(inc.alerts) if inc is not None else set()

    # --- views ----------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """The earliest time `on_tick` has something scheduled (it may be in the past)."""
        times = [g.flush_at for g in self._forming.values()]
        times += [i.next_at for i in self._incidents.values() if i.next_at is not None]
        return min(times, default=None)

    def incidents(self) -> list[Incident]:
        return list(self._incidents.values())

    # --- internals ------------------------------------------------------------------------

    def _incidents_of(self, alert: Alert) -> list[Incident]:
        found = []
        for iid in self._of_alert.get(alert.fingerprint, ()):
            inc = self._incidents[iid]
            # The same fingerprint firing again later is a new occurrence, a new incident.
            if inc.alerts[alert.fingerprint].first_seen == alert.first_seen:
                found.append(inc)
        return found

    def _known(self, alert: Alert) -> bool:
        return any(alert.fingerprint in g.alerts for g in self._forming.values()) or bool(
            self._incidents_of(alert))

    def _open(self, route: int, members: list[Alert], now: datetime) -> list[Intent]:
        members.sort(key=lambda a: (a.first_seen, a.fingerprint))
        iid = incident_id(self.config.route_name(route), members[0])
        inc = Incident(iid, route, {a.fingerprint: a for a in members}, next_at=now)
        self._incidents[iid] = inc
        for a in members:
            self._of_alert.setdefault(a.fingerprint, set()).add(iid)
        self._record(inc)
        return self._escalate(inc, now)

    def _adopt(self, route: int, record: IncidentRecord, alert: Alert) -> None:
        inc = self._incidents.get(record.id)
        if inc is None:
            inc = self._incidents[record.id] = record.revive(route)
        inc.alerts[alert.fingerprint] = alert
        self._of_alert.setdefault(alert.fingerprint, set()).add(inc.id)
        self._record(inc)

    def _record(self, inc: Incident, *, open_: bool = True) -> None:
        name = self.config.route_name(inc.route)
        self._changed[inc.id] = IncidentRecord.of(inc, name, open_=open_)

    def _escalate(self, inc: Incident, now: datetime) -> list[Intent]:
        live = inc.live()
        if not live:
            return []  # paused: it goes on as soon as one of its alerts wants someone again
        if self.quiet.holding(now, live[0].labels.get("line"), worst(live)) is not None:
            return []  # held until the quiet hours end
        step = inc.step + 1
        steps = self.router.steps(inc.route)
        if step >= steps:
            inc.next_at = None
            return []
        levels = self.router.levels(inc.route)
        level_index = step % len(levels)
        level = levels[level_index]
        shift = self.shift_at(now)
        out: list[Intent] = []
        for target in level.notify:
            for r in self.router.recipients(target, shift):
                out.append(self._delivery(inc, r, FIRING, step, level_index, live, now))
        if not out:
            log.warning("incident %s: level %d reaches nobody on shift %s", inc.id,
                        level_index, shift)
        inc.step = step
        delay = level.escalate_after_s
        inc.next_at = now + timedelta(seconds=delay) if delay and step + 1 < steps else None
        self._record(inc)
        return out

    def _update(self, inc: Incident, change: AlertChange, alert: Alert,
                now: datetime) -> list[Intent]:
        route = self.config.routes[inc.route]
        out: list[Intent] = []
        if change is AlertChange.ACKNOWLEDGED and not inc.acked and not inc.live():
            inc.acked, inc.next_at = True, None
            self._record(inc)
            out.append(Cancel(inc.id, f"acknowledged by {alert.acknowledged_by}"))
            if route.send_acknowledged:
                out += self._notices(inc, ACKNOWLEDGED, now, alert.acknowledged_by)
        if all(a.state is AlertState.RESOLVED for a in inc.alerts.values()):
            if route.send_resolved:
                out += self._notices(inc, RESOLVED, now)
            del self._incidents[inc.id]
            self._dormant.forget(inc.id)
            self._record(inc, open_=False)
            for fp in inc.alerts:
                ids = self._of_alert.get(fp, set())
                ids.discard(inc.id)
                if not ids:
                    self._of_alert.pop(fp, None)
        return out

    def _notices(self, inc: Incident, transition: str, now: datetime,
                 by: str | None = None) -> list[Intent]:
        alerts = list(inc.alerts.values())
        return [self._delivery(inc, r, transition, 0, 0, alerts, now, by)
                for r, _ in inc.notified.values()]

    def _delivery(self, inc: Incident, r: Recipient, transition: str, step: int, level: int,
                  alerts: list[Alert], now: datetime, by: str | None = None) -> Delivery:
        key = idempotency_key(inc.id, transition, step, r.channel, r.id)
        first = inc.notified.setdefault((r.channel, r.id), (r, key))[1]
        title, body = describe(alerts, transition, level=level, now=now, tz=self.tz,
                               acknowledged_by=by)
        lead = alerts[0]
        public = (self.config.public_url or "").rstrip("/")
        ack_url = expires = nonce = None
        if transition == FIRING and self.signer is not None and public:
            token, signed = self.signer.sign(key, now)
            ack_url, expires, nonce = public + ACK_PATH + token, signed.expires.isoformat(), \
                signed.nonce
        message = Message(
            key=key, incident=inc.id, transition=transition, step=step, level=level,
            title=title, body=body, severity=str(worst(alerts)), line=lead.labels.get("line"),
            machine=lead.labels.get("machine"), rule=lead.rule_id, created_at=now.isoformat(),
            alerts=[brief(a) for a in alerts], click_url=click_url(self.config, lead),
            ack_url=ack_url, ack_expires=expires, acknowledged_by=by,
            thread_key=first if first != key else None)
        return Delivery(key, inc.id, transition, step, r.channel, r.id, r.address,
                        lead.labels.get("line"), tuple(a.fingerprint for a in alerts), message,
                        now, nonce)
