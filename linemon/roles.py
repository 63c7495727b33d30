"""Scale-out roles: one plant config, several processes sharing the plant's broker and InfluxDB.

    linemon run --role engine --lines L1,L2   collectors, rules, history writer and
                                              notifications for some lines; serves only
                                              /healthz, /readyz and /metrics
    linemon run --role api                    every line, from the engines' bus topics and
                                              the store; writes nothing itself

An engine gets its own slice of the config (`engine_config`): its lines, the sources they
use, MQTT client ids and file paths (spool, outbox) suffixed with the engine id, so that
engines on one host or one broker never share a session or a file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from collector.historian.config import InfluxBackendConfig
from linemon.app import Linemon
from linemon.config import ConfigError, ConfigIssue, MqttSourceConfig, PlantConfig
from linemon.remote import RemoteLinemon

Role = Literal["all", "engine", "api"]
Runtime = Linemon | RemoteLinemon  # what the API serves: its own engine, or the engines' bus
ENGINE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError("command line", [ConfigIssue(path=path, message=message)])


def check_role(config: PlantConfig, role: Role) -> None:
    if role == "all":
        return
    if config.bus is None:
        raise _fail("bus", f"--role {role} needs a `bus:` section: the MQTT broker that "
                    "engines and API processes share")
    if not isinstance(config.historian.backend, InfluxBackendConfig):
        raise _fail("historian.backend", f"--role {role} needs the InfluxDB backend: a SQLite "
                    "history file belongs to one process")
    if config.notifications.ack_links is not None:
        # A link's single-use token lives in the sending engine's outbox, which API
        # processes cannot see; a link that cannot work must not be sent.
        raise _fail("notifications.ack_links", f"not available with --role {role} yet; "
                    "supervisors acknowledge in the phone view (/phone) instead")


def parse_lines(config: PlantConfig, lines: str) -> list[str]:
    wanted = [line.strip() for line in lines.split(",") if line.strip()]
    known = [line.id for line in config.lines]
    unknown = [line for line in wanted if line not in known]
    if not wanted:
        raise _fail("--lines", "name at least one line, e.g. --lines line-1,line-2")
    if unknown:
        raise _fail("--lines", f"unknown line(s) {', '.join(unknown)}; the config has "
                    f"{', '.join(known)}")
    return list(dict.fromkeys(wanted))


def default_engine_id(lines: list[str]) -> str:
    joined = "-".join(lines)
    if len(joined) <= 40:
        return f"engine-{joined}"
    # Cut long names, but keep two groups that share a prefix apart.
    return f"engine-{joined[:31]}-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def engine_config(config: PlantConfig, lines: list[str], engine_id: str) -> PlantConfig:
    """The slice of the plant one engine runs."""
    if not ENGINE_ID_RE.match(engine_id):
        raise _fail("--engine-id", f"{engine_id!r}: letters, digits, '_', '.', '-', at most 48")
    own = [line for line in config.lines if line.id in lines]
    machines = {m.id for line in own for m in line.machines}
    used = {m.source for line in own for m in line.machines}
    sources = [_suffixed(s, engine_id) if isinstance(s, MqttSourceConfig) else s
               for s in config.sources if s.name in used]
    rules = config.rules
    rules = rules.model_copy(update={
        "thresholds": [r for r in rules.thresholds if r.machine in machines],
        "spc": [r for r in rules.spc if r.machine in machines],
        "stale": [r for r in rules.stale
                  if (r.machine is None or r.machine in machines)
                  and (r.source is None or r.source in used)],
        "defect_spike": rules.defect_spike.model_copy(update={"machines": None if (
            rules.defect_spike.machines is None) else [
                m for m in rules.defect_spike.machines if m in machines]}),
    })
    historian = config.historian.model_copy(update={"spool": config.historian.spool.model_copy(
        update={"path": _per_engine(config.historian.spool.path, engine_id)})})
    outbox = config.notifications.outbox
    notifications = config.notifications.model_copy(update={
        "outbox": outbox.model_copy(update={"path": _per_engine(outbox.path, engine_id)})})
    changes: dict[str, Any] = {"lines": own, "sources": sources, "rules": rules,
                               "historian": historian, "notifications": notifications}
    return config.model_copy(update=changes)


def _suffixed(source: MqttSourceConfig, engine_id: str) -> MqttSourceConfig:
    # One broker session per engine: a shared client id would have engines kick each other off.
    base = source.client_id or f"linemon-{source.name}"
    return source.model_copy(update={"client_id": f"{base}-{engine_id}"})


def _per_engine(path: Path, engine_id: str) -> Path:
    return path.parent / engine_id / path.name
