"""The `notifications:` key of the plant config: channels, people, rosters, routes, escalation.

    channels  -> how a message leaves (ntfy, webhook, email, mqtt)
    people    -> who can be told, with their address on each channel
    rosters   -> who is on duty, by shift
    escalation-> named policies: levels of targets, "not acknowledged within N s -> next level"
    routes    -> which alerts go where (line, machine, rule, severity, shift), first match wins

This module imports only pydantic, the stdlib and linemon.model: linemon/config.py
imports it, so importing linemon.config here would be a cycle. References between the
sections (a route naming a channel, a roster naming a person) are checked by
`cross_check_notifications`, which the config loader calls.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from linemon.model import Severity

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+.*$")]
ROSTER_PREFIX = "roster:"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- channels ---------------------------------------------------------------------------


class NtfyChannelConfig(Strict):
    kind: Literal["ntfy"]
    name: Id
    server: HttpUrl = "https://ntfy.sh"
    topic: str | None = Field(default=None, description="used when a target names no people")
    token_env: str | None = Field(default=None, description="ntfy access token (tk_...)")
    timeout_s: float = Field(default=10.0, gt=0)


class WebhookChannelConfig(Strict):
    kind: Literal["webhook"]
    name: Id
    url: HttpUrl | None = None
    url_env: str | None = Field(default=None, description="Slack/Teams webhook URLs are secrets")
    format: Literal["json", "slack", "teams"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    secret_env: str | None = Field(
        default=None, description="HMAC-SHA256 of the body in X-Linemon-Signature: sha256=<hex>")
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannelConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of `url` or `url_env`")
        return self


class EmailChannelConfig(Strict):
    kind: Literal["email"]
    name: Id
    host: str
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="default: 587 starttls, 465 tls, 25 none")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(default_factory=list, description="used when a target names no people")
    ca_file: Path | None = Field(default=None, description="trust this CA (a plant mail server)")
    timeout_s: float = Field(default=15.0, gt=0)

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class MqttChannelConfig(Strict):
    """For stack lights and andon boards: one JSON message per alert state change."""

    kind: Literal["mqtt"]
    name: Id
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    username_env: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    topic: str = Field(default="linemon/alerts/{line}/{machine}",
                       description="placeholders: line, machine, rule, severity, fingerprint")
    qos: Literal[0, 1, 2] = 1
    retain: bool = Field(default=True, description="a light that reconnects sees the last state")
    timeout_s: float = Field(default=10.0, gt=0)


ChannelConfig = Annotated[
    NtfyChannelConfig | WebhookChannelConfig | EmailChannelConfig | MqttChannelConfig,
    Field(discriminator="kind"),
]
CHANNEL_KINDS = ("ntfy", "webhook", "email", "mqtt")


# --- people and rosters -------------------------------------------------------------------


class Person(Strict):
    id: Id
    name: str | None = None
    ntfy_topic: str | None = Field(default=None, description="their phone's ntfy topic")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")


class Roster(Strict):
    """Who is on duty: people by shift name, and `otherwise` outside those shifts."""

    shifts: dict[str, list[Id]] = Field(default_factory=dict)
    otherwise: list[Id] = Field(default_factory=list)


class Target(Strict):
    channel: Id
    to: list[str] = Field(
        default_factory=list,
        description="person ids or 'roster:<id>'; empty: the channel's own topic/address "
        "(webhook and mqtt channels take no people)",
    )


# --- escalation and routes ----------------------------------------------------------------


class EscalationLevel(Strict):
    notify: list[Target] = Field(min_length=1)
    escalate_after_s: float | None = Field(
        default=None, gt=0, description="not acknowledged this long after this level: next level")


class EscalationPolicy(Strict):
    levels: list[EscalationLevel] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=20,
                        description="after the last level, start over at level 0 this often")

    @model_validator(mode="after")
    def _reachable(self) -> EscalationPolicy:
        for i, level in enumerate(self.levels[:-1]):
            if level.escalate_after_s is None:
                raise ValueError(f"levels[{i}] has no escalate_after_s: levels after it would "
                                 "never be reached")
        if self.repeat and self.levels[-1].escalate_after_s is None:
            raise ValueError("repeat needs escalate_after_s on the last level (when to start over)")
        return self


class RouteMatch(Strict):
    """Every given field must match; an empty match takes every alert."""

    lines: list[Id] | None = None
    machines: list[Id] | None = None
    rules: list[str] | None = Field(default=None, description="rule kinds or ids")
    severities: list[Severity] | None = None
    shifts: list[str] | None = Field(default=None, description="only during these shifts")


class RouteConfig(Strict):
    name: Id | None = None
    match: RouteMatch = RouteMatch()
    notify: list[Target] = Field(default_factory=list, description="one level, no escalation")
    escalation: Id | None = Field(default=None, description="a policy from `escalation:`")
    group_by: list[str] = Field(default_factory=lambda: ["line"])
    group_wait_s: float = Field(
        default=0.0, ge=0, le=600,
        description="hold the first alert this long and send what fired meanwhile as one "
        "message; an alert inhibited meanwhile (a line stop explains it) is not sent")
    send_resolved: bool = True
    send_acknowledged: bool = False
    continue_: bool = Field(default=False, alias="continue",
                            description="also try the routes after this one")

    @model_validator(mode="after")
    def _one_plan(self) -> RouteConfig:
        if bool(self.notify) == (self.escalation is not None):
            raise ValueError("give exactly one of `notify` or `escalation`")
        return self


class QuietHours(Strict):
    """No firing messages below `min_severity` in this window (site time); held, not lost."""

    name: str = "quiet"
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))
    start: time
    end: time  # at or before the start: the window crosses midnight
    lines: list[Id] | None = None
    min_severity: Severity = Severity.CRITICAL


# --- delivery -----------------------------------------------------------------------------


class RetryConfig(Strict):
    initial_s: float = Field(default=2.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=300.0, gt=0)
    give_up_after_s: float = Field(default=86_400.0, gt=0)


class AckLinkConfig(Strict):
    secret_env: str = Field(description="HMAC key for the links (at least 32 characters)")
    ttl_s: float = Field(default=12 * 3600, gt=0, le=7 * 86_400)


class OutboxConfig(Strict):
    path: Path = Path("linemon-data/notify/outbox.sqlite")
    keep_days: float = Field(default=30, gt=0, description="delivery log retention")
    resume_window_s: float = Field(
        default=600, ge=0, description="after a restart, an alert that fires again within "
        "this long continues its incident (no second call); longer than any rule's `for`")


class NotificationsConfig(Strict):
    enabled: bool = True
    public_url: HttpUrl | None = Field(
        default=None, description="where phones reach linemon: ack links and the click URL")
    click_url: str | None = Field(
        default=None, description="template (public_url, line, machine, fingerprint); default "
        "{public_url}/phone")
    ack_links: AckLinkConfig | None = None
    outbox: OutboxConfig = OutboxConfig()
    retry: RetryConfig = RetryConfig()
    channels: list[ChannelConfig] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    rosters: dict[Id, Roster] = Field(default_factory=dict)
    escalation: dict[Id, EscalationPolicy] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    quiet_hours: list[QuietHours] = Field(default_factory=list)

    @model_validator(mode="after")
    def _links_need_a_url(self) -> NotificationsConfig:
        if self.ack_links is not None and self.public_url is None:
            raise ValueError("ack_links need public_url (the address phones reach linemon at)")
        return self

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.channels) and bool(self.routes)

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    def route_name(self, index: int) -> str:
        return self.routes[index].name or f"route-{index}"
