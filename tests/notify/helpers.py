"""Alerts, changes and configs for the notification tests, built in code with explicit times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from linemon.model import Alert, AlertChange, AlertChanged, AlertState, Severity
from rules.alerts import fingerprint
from rules.notify.config import NotificationsConfig
from rules.notify.message import Message, brief

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00 UTC: the early shift
SECRET = "ack-link-secret-for-the-tests-0123456789"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(machine: str | None = "press-1", *, line: str = "line-1",
          rule: str = "machine_stopped", severity: Severity = Severity.CRITICAL,
          at: float = 0.0, message: str | None = None) -> Alert:
    labels = {"line": line} | ({"machine": machine} if machine else {})
    return Alert(rule_id=rule, labels=labels, fingerprint=fingerprint(rule, labels),
                 severity=severity, state=AlertState.FIRING, first_seen=t(at), last_seen=t(at),
                 fired_at=t(at), message=message or f"{machine or line} stopped: Jam")


def changed(a: Alert, change: AlertChange, at: float, **fields: Any) -> AlertChanged:
    """The alert as it is after `change` at `at` (a snapshot, like the engine's)."""
    updates: dict[str, Any] = dict(fields)
    if change is AlertChange.RESOLVED:
        updates.update(state=AlertState.RESOLVED, resolved_at=t(at))
    elif change is AlertChange.ACKNOWLEDGED:
        updates.setdefault("acknowledged_by", "alice")
        updates.update(acknowledged_at=t(at))
    elif change is AlertChange.INHIBITED:
        updates.setdefault("inhibited_by", "0" * 16)
    elif change is AlertChange.UNINHIBITED:
        updates.update(inhibited_by=None)
    elif change is AlertChange.SILENCED:
        updates.setdefault("silenced_by", "silence-1")
    return AlertChanged(replace(a, **updates), change, t(at))


def config(**data: Any) -> NotificationsConfig:
    base: dict[str, Any] = {
        "public_url": "http://linemon.test:8000",
        "channels": [
            {"kind": "ntfy", "name": "phones", "server": "http://ntfy.test"},
            {"kind": "webhook", "name": "hook", "url": "http://hook.test/in"},
            {"kind": "email", "name": "mail", "host": "mail.test", "sender": "linemon@plant.test"},
        ],
        "people": [
            {"id": "alice", "ntfy_topic": "alice-phone", "email": "alice@plant.test"},
            {"id": "bob", "ntfy_topic": "bob-phone", "email": "bob@plant.test"},
            {"id": "carol", "ntfy_topic": "carol-phone"},
            {"id": "dave", "email": "dave@plant.test"},
        ],
        "rosters": {"supervisors": {"shifts": {"early": ["alice"], "late": ["bob"]},
                                    "otherwise": ["carol"]}},
        "routes": [{"notify": [{"channel": "phones", "to": ["roster:supervisors"]}]}],
    }
    base.update(data)
    return NotificationsConfig.model_validate(base)


def message(key: str = "r/abc@1/firing/0/ch/alice", *, transition: str = "firing",
            ack_url: str | None = "http://linemon.test/api/v1/alerts/ack-link/x.y",
            thread_key: str | None = None) -> Message:
    a = alert()
    return Message(
        key=key, incident="r/abc@1", transition=transition, step=0, level=0,
        title="CRITICAL: line-1 / press-1: stopped", body="press-1 stopped: Jam\nSince 06:00:00",
        severity="critical", line="line-1", machine="press-1", rule="machine_stopped",
        created_at=T0.isoformat(), alerts=[brief(a)], click_url="http://linemon.test/phone",
        ack_url=ack_url, thread_key=thread_key)


def shifts(at: datetime) -> str | None:
    """The unit plant's calendar: early 06-14, late 14-22, night 22-06 (UTC)."""
    hour = at.astimezone(UTC).hour
    return "early" if 6 <= hour < 14 else "late" if 14 <= hour < 22 else "night"
