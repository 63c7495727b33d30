"""What a notification says, once, whatever the channel; and its idempotency key.

A `Message` is rendered when the delivery is queued and stored in the outbox as JSON, so a
retry or a restart sends the very same words (and the same ack link). Channels turn it
into their wire format (ntfy JSON, Slack blocks, an e-mail, an MQTT payload).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from linemon.model import Alert, Severity
from rules.notify.config import NotificationsConfig

FIRING, RESOLVED, ACKNOWLEDGED = "firing", "resolved", "acknowledged"
TRANSITIONS = (FIRING, RESOLVED, ACKNOWLEDGED)

WHAT = {
    "machine_stopped": "stopped",
    "line_stopped": "line stopped",
    "defect_spike": "reject spike",
    "threshold": "out of limits",
    "spc": "out of control",
    "stale": "no data",
}


@dataclass(frozen=True, slots=True)
class AlertBrief:
    fingerprint: str
    rule_id: str
    line: str | None
    machine: str | None
    severity: str
    message: str
    first_seen: str  # ISO, UTC: with the fingerprint it names one occurrence
    fired_at: str | None


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    incident: str
    transition: str
    step: int  # escalation step: level + cycle x levels
    level: int
    title: str
    body: str
    severity: str
    line: str | None
    machine: str | None
    rule: str
    created_at: str
    alerts: list[AlertBrief] = field(default_factory=list)
    click_url: str | None = None
    ack_url: str | None = None
    ack_expires: str | None = None
    acknowledged_by: str | None = None
    thread_key: str | None = None  # the first firing message's key (e-mail threading)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        alerts = [AlertBrief(**a) for a in data.get("alerts", [])]
        return cls(**{**data, "alerts": alerts})


def idempotency_key(incident: str, transition: str, step: int, channel: str,
                    recipient: str) -> str:
    """Stable per (alert occurrence, transition, escalation step, recipient)."""
    return f"{incident}/{transition}/{step}/{channel}/{recipient}"


def incident_id(route: str, lead: Alert) -> str:
    """Route + lead alert fingerprint + occurrence (first_seen, stable for the alert's life)."""
    occurrence = int(lead.first_seen.timestamp() * 1000)
    return f"{route}/{lead.fingerprint}@{occurrence}"


def short_hash(text: str, n: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def brief(alert: Alert) -> AlertBrief:
    return AlertBrief(
        fingerprint=alert.fingerprint, rule_id=alert.rule_id, line=alert.labels.get("line"),
        machine=alert.labels.get("machine"), severity=str(alert.severity),
        message=alert.message, first_seen=alert.first_seen.isoformat(),
        fired_at=alert.fired_at.isoformat() if alert.fired_at else None)


def click_url(config: NotificationsConfig, alert: Alert) -> str | None:
    """Where a tap on the notification goes: `click_url` (a template), else the phone page."""
    public = (config.public_url or "").rstrip("/")
    if config.click_url is None:
        return f"{public}/phone" if public else None
    values = {"line": alert.labels.get("line", ""), "machine": alert.labels.get("machine", ""),
              "fingerprint": alert.fingerprint, "public_url": public}
    try:
        return config.click_url.format_map(values)
    except (KeyError, ValueError, IndexError):
        return config.click_url


def worst(alerts: list[Alert]) -> Severity:
    order = [Severity.INFO, Severity.WARNING, Severity.CRITICAL]
    return max((a.severity for a in alerts), key=order.index)


def describe(alerts: list[Alert], transition: str, *, level: int, now: datetime, tz: ZoneInfo,
             acknowledged_by: str | None = None) -> tuple[str, str]:
    """(title, body) in words a supervisor reads on a lock screen."""
    lead = alerts[0]
    if len(alerts) == 1:
        headline = f"{_where(lead)}: {WHAT.get(lead.rule_id.split(':', 1)[0], lead.rule_id)}"
        lines = [lead.message or headline]
    else:
        places = sorted({a.labels.get("line", "?") for a in alerts})
        headline = f"{len(alerts)} alerts on {', '.join(places)}"
        lines = [f"- {a.message or _where(a)}" for a in alerts]
    since = min((a.fired_at or a.first_seen) for a in alerts)
    if transition == FIRING:
        title = f"{str(worst(alerts)).upper()}: {headline}"
        lines.append(f"Since {_clock(since, tz)}")
        if level > 0:
            lines.append(f"Not acknowledged after {_duration(now - since)}: "
                         f"escalation level {level}")
    elif transition == RESOLVED:
        title = f"RESOLVED: {headline}"
        lines.append(f"Cleared {_clock(now, tz)} after {_duration(now - since)}")
    else:
        title = f"ACKNOWLEDGED: {headline}"
        lines.append(f"Acknowledged by {acknowledged_by or 'someone'} at {_clock(now, tz)}")
    return title, "\n".join(lines)


def _where(alert: Alert) -> str:
    line, machine = alert.labels.get("line"), alert.labels.get("machine")
    if line and machine:
        return f"{line} / {machine}"
    return machine or line or alert.rule_id


def _clock(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local:%H:%M:%S} {local.tzname() or ''}".strip()


def _duration(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
