"""Alerts and silences as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from linemon.model import Alert, AlertState, Severity, Silence

from .common import Id

ALERT_EXAMPLE = {
    "fingerprint": "5c1e0d7a9b2f4e61", "rule_id": "machine_stopped",
    "labels": {"line": "line-1", "machine": "press-1"}, "line": "line-1", "machine": "press-1",
    "severity": "critical", "state": "firing", "first_seen": "2026-03-02T06:10:00Z",
    "last_seen": "2026-03-02T06:12:00Z", "fired_at": "2026-03-02T06:10:00Z",
    "resolved_at": None, "value": None, "message": "press-1 is down: Jam",
    "acknowledged_by": None, "acknowledged_at": None, "inhibited_by": None,
    "silenced_by": None, "notifiable": True,
}


class AlertOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ALERT_EXAMPLE]})

    fingerprint: str = Field(description="stable id of the alert (rule + labels)")
    rule_id: str
    labels: dict[str, str]
    line: str | None
    machine: str | None
    severity: Severity
    state: AlertState
    first_seen: datetime
    last_seen: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    value: float | None
    message: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    inhibited_by: str | None = Field(description="fingerprint of the alert that explains this one")
    silenced_by: str | None = Field(description="id of the silence that covers it")
    notifiable: bool = Field(description="firing and neither inhibited nor silenced")

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        return cls(
            fingerprint=a.fingerprint, rule_id=a.rule_id, labels=dict(a.labels),
            line=a.labels.get("line"), machine=a.labels.get("machine"), severity=a.severity,
            state=a.state, first_seen=a.first_seen, last_seen=a.last_seen, fired_at=a.fired_at,
            resolved_at=a.resolved_at, value=a.value, message=a.message,
            acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at,
            inhibited_by=a.inhibited_by, silenced_by=a.silenced_by, notifiable=a.notifiable,
        )


class SilenceIn(BaseModel):
    """Mute the alerts of a line, a machine or a rule for a while; they stay visible, marked."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "line": "line-1", "duration_s": 3600, "comment": "planned maintenance on the press",
    }]})

    line: Id | None = None
    machine: Id | None = None
    rule: str | None = Field(default=None, pattern=r"^[a-z_]+(:[A-Za-z0-9_.-]+)?$",
                             description="a rule kind (machine_stopped) or rule id (spc:oven)")
    starts_at: datetime | None = Field(default=None, description="default: now; needs an offset")
    duration_s: int = Field(ge=60, le=30 * 86_400, description="how long, 1 minute to 30 days")
    comment: str = Field(min_length=1, max_length=500)


class SilenceOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "silence-1", "matchers": {"line": "line-1"},
        "starts_at": "2026-03-02T06:00:00Z", "ends_at": "2026-03-02T07:00:00Z",
        "created_by": "supervisor", "comment": "planned maintenance on the press",
        "active": True,
    }]})

    id: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    active: bool

    @classmethod
    def of(cls, s: Silence, now: datetime) -> SilenceOut:
        return cls(id=s.id, matchers=dict(s.matchers), starts_at=s.starts_at, ends_at=s.ends_at,
                   created_by=s.created_by, comment=s.comment, active=s.active(now))
