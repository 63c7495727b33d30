"""The plant config: one YAML file, validated at start-up, every error with its path and line.

The parts' own settings models live next to the parts that use them where that
part is self-contained (the historian); the plant-wide structure lives here.
"""

from __future__ import annotations

import os
import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.historian.config import HistorianConfig
from linemon.model import MachineState
from rules.notify.config import NotificationsConfig
from rules.notify.config_check import cross_check_notifications
from rules.rules_config import RulesConfig, cross_check_rules

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NODE_RE = re.compile(r"^(nsu=[^;]+|ns=\d+);[sigb]=.+$")
SPARKPLUG_DEVICE_RE = re.compile(r"^[^/+#]+(/[^/+#]+)?$")
TOPIC_PLACEHOLDERS = ("{line}", "{machine}")
DEPRECATED_OPCUA_POLICIES = ("Basic256", "Basic128Rsa15")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- site and shift calendar ---------------------------------------------------------


class Site(Strict):
    name: str
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown IANA timezone {value!r}") from err
        return value


class BreakConfig(Strict):
    name: str = "break"
    start: time
    end: time


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ShiftConfig(Strict):
    name: str
    start: time
    end: time  # an end at or before the start means the shift crosses midnight
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))
    breaks: list[BreakConfig] = Field(default_factory=list)
    target: int | None = Field(default=None, ge=0, description="good parts planned per shift")


class MaintenanceWindowConfig(Strict):
    """Planned maintenance: planned down time [ISO 22400 PDT] for the lines or machines named.

    With neither `lines` nor `machines` it covers the whole plant. Its time leaves the planned
    production time of what it covers, and a stop that begins inside it is a planned stop.
    """

    start: AwareDatetime
    end: AwareDatetime
    lines: list[Id] | None = None
    machines: list[Id] | None = None
    reason: str = "planned maintenance"

    @model_validator(mode="after")
    def _ends_after_start(self) -> MaintenanceWindowConfig:
        if self.end <= self.start:
            raise ValueError("a maintenance window must end after it starts")
        return self

    def covers(self, line: str | None, machine: str | None) -> bool:
        if self.lines is None and self.machines is None:
            return True
        return (line is not None and line in (self.lines or ())) or (
            machine is not None and machine in (self.machines or ()))


class CalendarConfig(Strict):
    shifts: list[ShiftConfig] = Field(min_length=1)
    holidays: list[str] = Field(
        default_factory=list,
        description="no-production days: ISO dates, or inclusive ranges "
        "'2026-12-24..2027-01-01'; a shift is off when the day it starts on is one",
    )
    maintenance: list[MaintenanceWindowConfig] = Field(default_factory=list)

    @field_validator("holidays")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for item in value:
            holiday_dates(item)
        return value


def holiday_dates(item: str) -> list[date]:
    """'2026-12-25' or '2026-12-24..2027-01-01' (inclusive) as the dates it names."""
    first, _, last = item.partition("..")
    try:
        a = date.fromisoformat(first.strip())
        b = date.fromisoformat(last.strip()) if last else a
    except ValueError:
        raise ValueError(f"{item!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
    if b < a:
        raise ValueError(f"{item!r}: the range ends before it starts")
    if (b - a).days > 366:
        raise ValueError(f"{item!r}: a range of more than a year is not a holiday")
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


# --- sources -------------------------------------------------------------------------


class OpcUaSecurity(Strict):
    policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss",
        "Basic256", "Basic128Rsa15",  # deprecated: refused unless allow_deprecated
    ] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    trusted_server_certificates: list[Path] = Field(default_factory=list)
    allow_deprecated: bool = False


class OpcUaSourceConfig(Strict):
    kind: Literal["opcua"]
    name: Id
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://.+")]
    mode: Literal["subscription", "polling"] = "subscription"
    publishing_interval_ms: int = Field(default=250, ge=10)
    poll_interval_ms: int = Field(default=1000, ge=50)
    watchdog_interval_s: float = Field(default=3.0, gt=0)
    timeout_s: float = Field(default=4.0, gt=0)
    max_nodes_per_read: int = Field(
        default=500, ge=1, description="polling: nodes per Read request (servers cap it)"
    )
    security: OpcUaSecurity = OpcUaSecurity()
    username_env: str | None = None
    password_env: str | None = None


class MqttSourceConfig(Strict):
    kind: Literal["mqtt"]
    name: Id
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="3.1.1 only for brokers without v5, e.g. the demo's embedded one"
    )
    format: Literal["json", "sparkplug"] = "json"
    group_id: str | None = Field(
        default=None, pattern=r"^[^/+#]+$", description="Sparkplug B group id (format: sparkplug)"
    )
    qos: Literal[0, 1, 2] = 1
    session_expiry_s: int = Field(default=3600, ge=0)
    shared_group: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    max_payload_bytes: int = Field(default=65536, ge=64)


SourceConfig = Annotated[OpcUaSourceConfig | MqttSourceConfig, Field(discriminator="kind")]


class BusConfig(Strict):
    """The MQTT broker engines and API processes share when linemon is scaled out
    (`linemon run --role engine|api`); unused by the single-process default."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    topic_prefix: str = Field(default="linemon", pattern=r"^[^/+#$][^+#]*[^/+#]$|^[^/+#$]$")
    username_env: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    reply_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="how long the API waits for an engine's answer")
    stale_after_s: float = Field(
        default=5.0, gt=0, description="a line view older than this is reported as stale")


# --- lines and machines --------------------------------------------------------------


class TagRef(Strict):
    """Where one signal comes from: an OPC-UA node, an MQTT topic and JSON field, or a
    Sparkplug B device and metric."""

    node: str | None = None
    topic: str | None = Field(
        default=None, description="one topic; {line} and {machine} stand for the machine's ids"
    )
    field: str = "value"
    ts_field: str | None = "ts"
    device: str | None = Field(
        default=None, description="Sparkplug B: '<edge node id>/<device id>', or '<edge node id>' "
        "for a node metric",
    )
    metric: str | None = Field(default=None, description="Sparkplug B metric name, as born")
    type: Literal["auto", "int", "float", "bool", "str"] = "auto"
    sampling_interval_ms: int | None = Field(default=None, ge=0)
    queue_size: int | None = Field(default=None, ge=1)
    deadband: float | None = Field(default=None, ge=0)

    @field_validator("node")
    @classmethod
    def _node_format(cls, value: str | None) -> str | None:
        if value is not None and not NODE_RE.match(value):
            raise ValueError("expected 'nsu=<namespace uri>;s=<id>' or 'ns=<index>;s=<id>'")
        return value

    @field_validator("topic")
    @classmethod
    def _one_topic(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "+" in value or "#" in value:
            raise ValueError("names one topic: no '+' or '#' (use {line} and {machine})")
        rest = value
        for placeholder in TOPIC_PLACEHOLDERS:
            rest = rest.replace(placeholder, "")
        if "{" in rest or "}" in rest:
            raise ValueError("the only placeholders are {line} and {machine}")
        return value

    @field_validator("device")
    @classmethod
    def _device_format(cls, value: str | None) -> str | None:
        if value is not None and not SPARKPLUG_DEVICE_RE.match(value):
            raise ValueError("expected '<edge node id>/<device id>' or '<edge node id>'")
        return value


class StateMapEntry(Strict):
    state: MachineState
    reason: str | None = None
    breakdown: bool = Field(
        default=False,
        description="a stop in this state is a breakdown however short (never a micro-stop), "
        "e.g. a PLC restart",
    )


class ProductConfig(Strict):
    ideal_cycle_time_s: float = Field(gt=0)


class MachineConfig(Strict):
    id: Id
    name: str | None = None
    source: Id
    ideal_cycle_time_s: float = Field(gt=0)
    tags: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], TagRef]
    state_map: str = "default"
    micro_stop_threshold_s: float = Field(default=30.0, ge=0)
    stale_after_s: float | None = Field(
        default=None, gt=0,
        description="offline when no sample arrives for this long; for publishers that send "
        "a heartbeat or periodic values. Without it, only a source outage means offline "
        "(an OPC-UA subscription reports on change, so silence is not staleness)",
    )
    counter_max: int | None = Field(
        default=None, gt=0, description="the largest value the PLC's counters hold before wrapping"
    )
    no_count_stop_factor: float = Field(
        default=5.0, gt=1, description="no part within k x ideal cycle time means stopped"
    )
    products: dict[str, ProductConfig] = Field(
        default_factory=dict,
        description="ideal cycle time per product, chosen by the machine's `product` tag; "
        "an unknown or missing product uses the machine's ideal_cycle_time_s",
    )
    startup_window_s: float | None = Field(
        default=None, ge=0, description="overrides oee.startup_window_s for this machine"
    )


class LineConfig(Strict):
    id: Id
    name: str | None = None
    machines: list[MachineConfig] = Field(min_length=1)
    end_machine: Id | None = Field(
        default=None, description="the machine whose output is the line's (default: the last)"
    )
    ideal_cycle_time_s: float | None = Field(
        default=None, gt=0,
        description="the line's ideal cycle time for its output-based OEE (default: the "
        "slowest machine's)",
    )


Role = Literal["viewer", "operator", "maintenance", "supervisor", "admin"]


class AnonymousAccess(Strict):
    """Read-only access without a key, for a trusted network (the demo uses it)."""

    role: Literal["viewer"] = "viewer"


class ApiKeyConfig(Strict):
    name: Id
    role: Role
    key_env: str = Field(description="environment variable holding the key; never the key itself")
    lines: list[Id] | None = Field(default=None, description="lines the key may see; all if unset")
    kiosk: bool = Field(
        default=False,
        description="a wall board's key: read-only, its one line's live view and nothing else",
    )

    @model_validator(mode="after")
    def _kiosk_is_one_line_viewer(self) -> ApiKeyConfig:
        if self.kiosk and (self.role != "viewer" or self.lines is None or len(self.lines) != 1):
            raise ValueError("a kiosk key needs role: viewer and exactly one line in `lines`")
        return self


class ApiConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    anonymous: AnonymousAccess | None = None
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=65_536, ge=1024, description="larger request bodies: 413")
    max_range_days: float = Field(
        default=31, gt=0, le=400, description="longest history query (start to end); longer: 422"
    )
    auth_failures_per_minute: int = Field(
        default=10, ge=1, description="bad keys per client per minute before it gets 429"
    )


class OeeConfig(Strict):
    """How OEE is counted; the defaults follow ISO 22400-2."""

    planned_stops_count_against_availability: bool = Field(
        default=False,
        description="false (ISO): breaks, maintenance windows and planned stops leave the "
        "planned production time; true: they count as availability losses",
    )
    startup_window_s: float = Field(
        default=0.0, ge=0,
        description="rejects this soon after a stop, changeover or planned stop ends are "
        "startup rejects (a loss of its own); 0: all rejects are production rejects",
    )
    snapshot_every_s: float = Field(
        default=60.0, ge=0,
        description="how often live OEE snapshots go to the historian (0: only at shift end)",
    )


# A PLC that reports 0 is there and says it is off: the machine's own unplanned stop (a PLC
# restart costs the part in process and resets the counters), not "no data".
DEFAULT_STATE_MAP: dict[str, StateMapEntry] = {
    "0": StateMapEntry(state=MachineState.DOWN, reason="PLC off", breakdown=True),
    "1": StateMapEntry(state=MachineState.RUNNING),
    "2": StateMapEntry(state=MachineState.IDLE, reason="starved"),
    "3": StateMapEntry(state=MachineState.IDLE, reason="blocked"),
    "4": StateMapEntry(state=MachineState.DOWN),
    "5": StateMapEntry(state=MachineState.CHANGEOVER),
    "6": StateMapEntry(state=MachineState.PLANNED_STOP),
}


class PlantConfig(Strict):
    site: Site
    calendar: CalendarConfig
    sources: list[SourceConfig] = Field(min_length=1)
    lines: list[LineConfig] = Field(min_length=1)
    state_maps: dict[str, dict[str, StateMapEntry]] = Field(default_factory=dict)
    reason_codes: dict[str, str] = Field(default_factory=dict)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    historian: HistorianConfig = Field(default_factory=HistorianConfig)
    api: ApiConfig = ApiConfig()
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    oee: OeeConfig = OeeConfig()
    bus: BusConfig | None = None

    def state_map(self, name: str) -> dict[str, StateMapEntry]:
        if name == "default" and name not in self.state_maps:
            return DEFAULT_STATE_MAP
        return self.state_maps[name]

    def source(self, name: str) -> SourceConfig:
        return next(s for s in self.sources if s.name == name)

    def machines(self) -> list[tuple[LineConfig, MachineConfig]]:
        return [(line, machine) for line in self.lines for machine in line.machines]

    def silence_line(self, matchers: dict[str, str]) -> str | None:
        """The line a silence names, directly or through its machine; None: a rule, anywhere
        (or a machine this config does not have)."""
        if "line" in matchers:
            return matchers["line"]
        machine = matchers.get("machine")
        return next((ln.id for ln, m in self.machines() if m.id == machine), None)


# --- loading and errors --------------------------------------------------------------


class ConfigIssue(BaseModel):
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '<root>'}: {self.message}{where}"


class ConfigError(Exception):
    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__("\n".join([f"{source}: invalid plant config"] + [str(i) for i in issues]))


def load_config(path: str | Path) -> PlantConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), [ConfigIssue(path="", message=str(err))]) from err
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> PlantConfig:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else None
        issue = ConfigIssue(path="", message=f"not valid YAML: {err}", line=line)
        raise ConfigError(source, [issue]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue(path="", message="expected a mapping at the top")])
    try:
        config = PlantConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, [_issue(e, data, root) for e in err.errors()]) from None
    issues = [
        ConfigIssue(path=p, message=m, line=_line_of(root, _parse_path(p)))
        for p, m in cross_check(config)
    ]
    if issues:
        raise ConfigError(source, issues)
    return config


def cross_check(config: PlantConfig) -> list[tuple[str, str]]:
    """References between sections, which pydantic cannot see one field at a time."""
    problems: list[tuple[str, str]] = []
    sources = {s.name: s for s in config.sources}
    if len(sources) != len(config.sources):
        problems.append(("sources", "source names must be unique"))
    for si, source_config in enumerate(config.sources):
        problems.extend(_check_source(f"sources[{si}]", source_config))
    seen_machines: set[str] = set()
    line_ids = [line.id for line in config.lines]
    for i, line_id in enumerate(line_ids):
        if line_id in line_ids[:i]:
            problems.append((f"lines[{i}].id", f"duplicate line id {line_id!r}"))
    for li, line in enumerate(config.lines):
        ids = [m.id for m in line.machines]
        if line.end_machine is not None and line.end_machine not in ids:
            problems.append((f"lines[{li}].end_machine", f"no machine {line.end_machine!r} here"))
        for mi, machine in enumerate(line.machines):
            at = f"lines[{li}].machines[{mi}]"
            if machine.id in seen_machines:
                problems.append((f"{at}.id", f"duplicate machine id {machine.id!r}"))
            seen_machines.add(machine.id)
            source = sources.get(machine.source)
            if source is None:
                known = ", ".join(sorted(sources)) or "none"
                problems.append((f"{at}.source", f"unknown source {machine.source!r} ({known})"))
            if machine.state_map != "default" and machine.state_map not in config.state_maps:
                problems.append((f"{at}.state_map", f"unknown state map {machine.state_map!r}"))
            if "state" not in machine.tags and not (
                {"good_count", "total_count"} & machine.tags.keys()
            ):
                problems.append((f"{at}.tags", "needs a 'state' tag or a good/total count tag"))
            if source is None:
                continue
            for name, tag in machine.tags.items():
                problems.extend(_check_tag(f"{at}.tags.{name}", source, tag))
    machine_lines = {m.id: line.id for line, m in config.machines()}
    for i, window in enumerate(config.calendar.maintenance):
        for j, lid in enumerate(window.lines or []):
            if lid not in line_ids:
                problems.append((f"calendar.maintenance[{i}].lines[{j}]", f"unknown line {lid!r}"))
        for j, mid in enumerate(window.machines or []):
            if mid not in machine_lines:
                problems.append(
                    (f"calendar.maintenance[{i}].machines[{j}]", f"unknown machine {mid!r}"))
    problems += cross_check_rules(config.rules, machine_lines, set(sources))
    problems += cross_check_notifications(config.notifications, machine_lines,
                                          {shift.name for shift in config.calendar.shifts})
    return problems


def _check_source(at: str, source: SourceConfig) -> list[tuple[str, str]]:
    if isinstance(source, OpcUaSourceConfig):
        sec = source.security
        if sec.policy in DEPRECATED_OPCUA_POLICIES and not sec.allow_deprecated:
            return [(f"{at}.security.policy", f"{sec.policy} is deprecated (broken crypto); set "
                     "security.allow_deprecated: true to use it anyway")]
        if (sec.policy == "None") != (sec.mode == "None"):
            return [(f"{at}.security.mode", "policy None goes with mode None; a security policy "
                     "needs mode Sign or SignAndEncrypt")]
        missing = [key for key in ("certificate", "private_key", "trusted_server_certificates")
                   if sec.policy != "None" and not getattr(sec, key)]
        return [(f"{at}.security.{key}", f"policy {sec.policy} needs it (linemon does not trust "
                 "a server on first use)" if key.startswith("trusted") else
                 f"policy {sec.policy} needs the client's {key.replace('_', ' ')}")
                for key in missing]
    if source.format == "sparkplug":
        if source.group_id is None:
            return [(f"{at}.group_id", "format sparkplug needs the Sparkplug B group id")]
        if source.shared_group is not None:
            return [(f"{at}.shared_group", "a Sparkplug B host must see every message of an edge "
                     "node (seq numbers); shared subscriptions would split them")]
    elif source.group_id is not None:
        return [(f"{at}.group_id", "group_id is for format: sparkplug")]
    if source.ca_file is not None and not source.tls:
        return [(f"{at}.ca_file", "ca_file needs tls: true")]
    return []


_OPCUA_ONLY = ("sampling_interval_ms", "queue_size", "deadband")


def _check_tag(at: str, source: SourceConfig, tag: TagRef) -> list[tuple[str, str]]:
    given = tag.model_fields_set
    if source.kind == "opcua":
        if tag.topic is not None:
            return [(f"{at}.topic", "'topic' is for MQTT sources; this machine reads OPC-UA")]
        for key in ("device", "metric"):
            if getattr(tag, key) is not None:
                return [(f"{at}.{key}", f"'{key}' is for Sparkplug B sources; this machine reads "
                         "OPC-UA")]
        if tag.node is None:
            return [(f"{at}.node", "an OPC-UA machine's tag needs a 'node'")]
        return []
    if tag.node is not None:
        return [(f"{at}.node", "'node' is for OPC-UA sources; this machine reads MQTT")]
    for key in _OPCUA_ONLY:
        if key in given:
            return [(f"{at}.{key}", f"'{key}' is for OPC-UA tags; this machine reads MQTT")]
    if source.kind == "mqtt" and source.format == "sparkplug":
        for key in ("topic", "field", "ts_field"):
            if key in given:
                return [(f"{at}.{key}", f"'{key}' is for JSON payloads; a Sparkplug B tag names "
                         "its 'device' and 'metric'")]
        if tag.device is None:
            return [(f"{at}.device", "a Sparkplug B tag needs a 'device': '<edge node id>/"
                     "<device id>', or '<edge node id>' for a node metric")]
        if tag.metric is None:
            return [(f"{at}.metric", "a Sparkplug B tag needs a 'metric' (its name in the birth)")]
        return []
    for key in ("device", "metric"):
        if getattr(tag, key) is not None:
            return [(f"{at}.{key}", f"'{key}' is for Sparkplug B sources (format: sparkplug)")]
    if tag.topic is None:
        return [(f"{at}.topic", "an MQTT machine's tag needs a 'topic'")]
    return []


def resolve_secret(env_name: str | None, field_path: str) -> str | None:
    """Secrets come from the environment variable the file names, never from the file."""
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            "environment",
            [ConfigIssue(path=field_path, message=f"environment variable {env_name} is not set")],
        )
    return value


def _issue(error: Any, data: Any, root: yaml.Node | None) -> ConfigIssue:
    keys = _real_keys(error["loc"], data)
    path = _format_path(keys)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (not allowed here)"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        message = f"unknown kind {error['input'].get('kind')!r}; expected one of: {expected}"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if error["type"] == "union_tag_invalid":
        keys.append("kind")
        path = _format_path(keys)
    return ConfigIssue(path=path, message=message, line=_line_of(root, keys))


def _real_keys(loc: tuple[Any, ...], data: Any) -> list[str | int]:
    """Drop pydantic's union-tag entries so the path matches the YAML the user wrote."""
    keys: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            keys.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not part.startswith(
            ("function-", "tagged-union")
        ) and part not in ("opcua", "mqtt", "sqlite", "influxdb", "ntfy", "webhook", "email"):
            keys.append(part)  # a missing key: name it, then stop descending
            node = None
    return keys


def _format_path(keys: list[str | int]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _parse_path(path: str) -> list[str | int]:
    keys: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        keys.append(int(index) if index else name)
    return keys


def _line_of(root: yaml.Node | None, keys: list[str | int]) -> int | None:
    node, line = root, None
    for key in keys:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == key), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            break
    if node is not None and keys and not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        line = node.start_mark.line + 1
    return line
