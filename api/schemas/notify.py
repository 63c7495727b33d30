"""Notifications as the API shows them: the delivery log and an ack link's answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.alerts import ALERT_EXAMPLE, AlertOut
from rules.notify.outbox import Row

Status = Literal["pending", "delivered", "failed", "cancelled"]

DELIVERY_EXAMPLE = {
    "id": 12, "key": "stops/5c1e0d7a9b2f4e61@1772431800000/firing/0/phones/alice",
    "incident": "stops/5c1e0d7a9b2f4e61@1772431800000", "transition": "firing", "step": 0,
    "level": 0, "channel": "phones", "recipient": "alice", "line": "line-1",
    "fingerprints": ["5c1e0d7a9b2f4e61"], "title": "CRITICAL: line-1 / press-1: stopped",
    "status": "delivered", "attempts": 1, "created_at": "2026-03-02T06:10:00Z",
    "next_attempt_at": None, "delivered_at": "2026-03-02T06:10:00.080000Z",
    "last_error": None, "receipt": "Hx7kQ2aZ", "link_used_at": None,
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DELIVERY_EXAMPLE]})

    id: int = Field(description="also the cursor: pass it as `before` for older ones")
    key: str = Field(description="idempotency key: incident/transition/step/channel/recipient")
    incident: str = Field(description="route/lead alert fingerprint@occurrence")
    transition: Literal["firing", "resolved", "acknowledged"]
    step: int = Field(description="escalation step (level + cycles x levels)")
    level: int
    channel: str
    recipient: str = Field(description="person id, or the channel's own destination")
    line: str | None
    fingerprints: list[str]
    title: str
    status: Status
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="pending only: the next try")
    delivered_at: datetime | None
    last_error: str | None
    receipt: str | None = Field(description="the receiver's answer (ntfy id, SMTP reply)")
    link_used_at: datetime | None = Field(description="when its ack link was used")

    @classmethod
    def of(cls, row: Row) -> DeliveryOut:
        message = row.message
        return cls(
            id=row.id, key=row.key, incident=row.incident, transition=row.transition,  # type: ignore[arg-type]
            step=row.step, level=int(message.get("level", 0)), channel=row.channel,
            recipient=row.recipient, line=row.line, fingerprints=row.fingerprints,
            title=str(message.get("title", "")), status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts, created_at=datetime.fromtimestamp(row.created_at, UTC),
            next_attempt_at=_utc(row.next_at) if row.status == "pending" else None,
            delivered_at=_utc(row.delivered_at), last_error=row.last_error,
            receipt=row.receipt, link_used_at=_utc(row.link_used_at))


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None = Field(description="pass as `before` for the next (older) page")


class AckLinkOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "acknowledged_by": "alice via phones", "alerts": [
            {**ALERT_EXAMPLE, "acknowledged_by": "alice via phones",
             "acknowledged_at": "2026-03-02T06:11:00Z"}]}]})

    acknowledged_by: str
    alerts: list[AlertOut] = Field(description="the message's alerts that are still active")


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None
