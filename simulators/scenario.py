"""Scenario: the plant to simulate (site, lines, machines, calendar) and its timeline."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from simulators.calendar import BreakSpec, CalendarSpec, ShiftSpec
from simulators.scenario_reader import (
    ReadContext,
    ScenarioError,
    Section,
    as_bool,
    as_int,
    as_number,
    as_str,
    clock_time,
    fraction,
    parse_duration,
    positive_duration,
    weighted_codes,
    yaml_lines,
)
from simulators.specs import (
    MQTT_MODES,
    PROTOCOLS,
    UINT32_MAX,
    LineSpec,
    MachineSpec,
    MqttOptions,
    ProcessSpec,
    RandomStops,
)
from simulators.timeline import TimelineEntry, TimelineError, parse_timeline

__all__ = [
    "MQTT_MODES",
    "LineSpec",
    "MachineSpec",
    "MqttOptions",
    "ProcessSpec",
    "RandomStops",
    "Scenario",
    "ScenarioError",
    "load_scenario",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    site: str
    lines: tuple[LineSpec, ...]
    name: str = "scenario"
    description: str = ""
    seed: int = 0
    start: datetime | None = None
    duration_s: float | None = None
    calendar: CalendarSpec | None = None
    reasons: Mapping[int, str] = field(default_factory=dict)
    timeline: tuple[TimelineEntry, ...] = ()
    micro_stop_threshold_s: float = 30.0
    process_interval_s: float = 5.0
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    namespace_uri: str = "urn:linemon:simulator"

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str | None = None, marks: Mapping[str, int] = {}
    ) -> Scenario:
        return _read_scenario(Section(data, "", ReadContext(source, marks)), source)

    def machines(self) -> Iterator[tuple[LineSpec, MachineSpec]]:
        for line in self.lines:
            for machine in line.machines:
                yield line, machine

    def machine(self, machine_id: str) -> MachineSpec:
        for _, machine in self.machines():
            if machine.id == machine_id:
                return machine
        raise KeyError(f"no machine {machine_id!r} in scenario {self.name!r}")

    def reason_text(self, code: int) -> str:
        return self.reasons.get(code, f"reason {code}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; errors name the file, line and key path."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        marks = yaml_lines(text)
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    data = dict(data)
    data.setdefault("name", path.stem)
    return Scenario.from_dict(data, source=str(path), marks=marks)


# -- reading ------------------------------------------------------------------


def _read_scenario(top: Section, source: str | None) -> Scenario:
    reasons = _read_reasons(top)
    random_default = top.get("random", as_bool, True)
    line_items = top.items("lines")
    if top.has("line"):
        line_items = [("line", top.data["line"]), *line_items]
        top.section("line")
    if not line_items:
        raise top.ctx.error("lines", "is required: at least one line with machines")
    lines = tuple(
        _read_line(Section(d, p, top.ctx), random_default, reasons) for p, d in line_items
    )
    ids = [m.id for line in lines for m in line.machines]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise top.ctx.error("lines", f"machine id {duplicate!r} is used twice")
    try:
        timeline = parse_timeline([d for _, d in top.items("timeline")], ids, reasons)
    except TimelineError as err:
        raise top.ctx.error(f"timeline[{err.index}]", f"{err.text!r}: {err.detail}") from None
    mqtt = top.section("mqtt")
    opcua = top.section("opcua")
    scenario = Scenario(
        name=top.get("name", as_str, "scenario"),
        description=top.get("description", str, ""),
        site=top.get("site", as_str),
        seed=top.get("seed", as_int, 0),
        start=top.get("start", _as_start, None),
        duration_s=top.get("duration", positive_duration, None),
        calendar=_read_calendar(top.section("calendar")),
        reasons=reasons,
        lines=lines,
        timeline=timeline,
        micro_stop_threshold_s=top.get("micro_stop_threshold_s", parse_duration, 30.0),
        process_interval_s=top.get("process_interval", positive_duration, 5.0),
        mqtt=_read_mqtt(mqtt) if mqtt else MqttOptions(),
        namespace_uri=opcua.get("namespace_uri", as_str, "urn:linemon:simulator")
        if opcua
        else "urn:linemon:simulator",
    )
    if opcua:
        opcua.done()
    top.done()
    return scenario


def _read_reasons(top: Section) -> dict[int, str]:
    raw = top.get("reasons", dict, {})
    reasons: dict[int, str] = {}
    for code, text in raw.items():
        if isinstance(code, bool) or not isinstance(code, int):
            raise top.ctx.error(f"reasons.{code}", "reason codes must be integers")
        reasons[code] = as_str(text)
    return reasons


def _read_line(sec: Section, random_default: bool, reasons: Mapping[int, str]) -> LineSpec:
    machines = tuple(
        _read_machine(Section(d, p, sec.ctx), random_default, reasons)
        for p, d in sec.items("machines")
    )
    if not machines:
        raise sec.ctx.error(sec.child_path("machines"), "a line needs at least one machine")
    line = LineSpec(id=sec.get("id", as_str), name=sec.get("name", as_str, ""), machines=machines)
    sec.done()
    return line


def _read_machine(sec: Section, random_default: bool, reasons: Mapping[int, str]) -> MachineSpec:
    protocol = sec.get("protocol", _one_of(PROTOCOLS), "opcua")
    mtbf = sec.get("mtbf", positive_duration, None)
    mttr = sec.get("mttr", positive_duration, None)
    if (mtbf is None) != (mttr is None):
        raise sec.ctx.error(sec.child_path("mtbf"), "give both mtbf and mttr, or neither")
    fault_reasons = sec.get("fault_reasons", weighted_codes, ())
    if mtbf is not None and not fault_reasons:
        raise sec.ctx.error(sec.child_path("fault_reasons"), "required when mtbf is given")
    _check_codes(sec, "fault_reasons", fault_reasons, reasons)
    micro = sec.section("micro_stops")
    changeovers = sec.section("changeovers")
    capacity = sec.get("buffer_capacity", as_int, 10)
    if capacity < 1:
        raise sec.ctx.error(sec.child_path("buffer_capacity"), "must be at least 1")
    initial = sec.get("buffer_initial", as_int, None)
    if initial is not None and not 0 <= initial <= capacity:
        raise sec.ctx.error(sec.child_path("buffer_initial"), f"must be 0..{capacity}")
    counter_max = sec.get("counter_max", as_int, UINT32_MAX)
    if not 1 <= counter_max <= UINT32_MAX:
        raise sec.ctx.error(sec.child_path("counter_max"), f"must be 1..{UINT32_MAX}")
    process = sec.section("process")
    spec = MachineSpec(
        id=sec.get("id", as_str),
        name=sec.get("name", as_str, ""),
        protocol=protocol,
        ideal_cycle_time_s=sec.get("ideal_cycle_time_s", positive_duration),
        speed_loss=sec.get("speed_loss", fraction, 0.05),
        reject_rate=sec.get("reject_rate", fraction, 0.01),
        random=sec.get("random", as_bool, random_default),
        mtbf_s=mtbf,
        mttr_s=mttr,
        fault_reasons=fault_reasons,
        micro_stops=_read_random_stops(micro, reasons, 3.0, 20.0) if micro else None,
        changeovers=_read_random_stops(changeovers, reasons, 300.0, 900.0) if changeovers else None,
        counter_max=counter_max,
        buffer_capacity=capacity,
        buffer_initial=initial,
        plc_restart_s=sec.get("plc_restart", positive_duration, 8.0),
        idle_report_s=sec.get("idle_report", parse_duration, 2.0),
        process=_read_process(process) if process else ProcessSpec(),
    )
    sec.done()
    return spec


def _read_random_stops(
    sec: Section, reasons: Mapping[int, str], min_s: float, max_s: float
) -> RandomStops:
    spec = RandomStops(
        every_s=sec.get("every", positive_duration),
        min_s=sec.get("min", positive_duration, min_s),
        max_s=sec.get("max", positive_duration, max_s),
        reasons=sec.get("reasons", weighted_codes),
    )
    if spec.max_s < spec.min_s:
        raise sec.ctx.error(sec.child_path("max"), "must not be below min")
    _check_codes(sec, "reasons", spec.reasons, reasons)
    sec.done()
    return spec


def _read_process(sec: Section) -> ProcessSpec:
    default = ProcessSpec()
    values = {
        name: sec.get(name, as_number, getattr(default, name))
        for name in ProcessSpec.__dataclass_fields__
        if name != "thermal_tau_s"
    }
    values["thermal_tau_s"] = sec.get("thermal_tau", positive_duration, default.thermal_tau_s)
    sec.done()
    return ProcessSpec(**values)


def _read_calendar(sec: Section | None) -> CalendarSpec | None:
    if sec is None:
        return None
    timezone = sec.get("timezone", as_str, "UTC")
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError):
        raise sec.ctx.error(sec.child_path("timezone"), f"unknown time zone {timezone!r}") from None
    shifts = []
    for path, data in sec.items("shifts"):
        shift = Section(data, path, sec.ctx)
        breaks = []
        for b_path, b_data in shift.items("breaks"):
            brk = Section(b_data, b_path, sec.ctx)
            breaks.append(
                BreakSpec(
                    start=brk.get("start", clock_time),
                    end=brk.get("end", clock_time),
                    name=brk.get("name", as_str, "break"),
                )
            )
            brk.done()
        shifts.append(
            ShiftSpec(
                name=shift.get("name", as_str),
                start=shift.get("start", clock_time),
                end=shift.get("end", clock_time),
                breaks=tuple(breaks),
            )
        )
        shift.done()
    if not shifts:
        raise sec.ctx.error(sec.child_path("shifts"), "a calendar needs at least one shift")
    sec.done()
    return CalendarSpec(timezone=timezone, shifts=tuple(shifts))


def _read_mqtt(sec: Section) -> MqttOptions:
    options = MqttOptions(
        mode=sec.get("mode", _one_of(MQTT_MODES), "json-per-signal"),
        prefix=sec.get("prefix", as_str, "plant"),
        group_id=sec.get("group_id", as_str, "linemon"),
        retain=sec.get("retain", as_bool, False),
    )
    sec.done()
    return options


def _as_start(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"start needs a UTC offset, e.g. '2024-03-04T06:00:00+01:00': {value!r}")
    return parsed.astimezone(UTC)


def _one_of(choices: tuple[str, ...]):
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _check_codes(sec: Section, key: str, codes, reasons: Mapping[int, str]) -> None:
    for code, _ in codes:
        if code not in reasons:
            raise sec.ctx.error(
                sec.child_path(key), f"reason code {code} is not in the scenario's reasons table"
            )
