"""The `rules:` key of the plant config: alert rules and their defaults.

An empty `rules: {}` already gives the alerts a supervisor expects: a machine stop, a
line-wide stop (one alert for the line), and a defect spike on every machine. Threshold,
stale-data and SPC rules are opt-in, because they name signals only the plant knows.

This module imports only pydantic, the stdlib and linemon.model: linemon/config.py
imports it, so importing linemon.config here would be a cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from linemon.model import MachineState, Severity

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Seconds = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineStopConfig(Strict):
    """A push within seconds of a stop: a machine DOWN for longer than `after_s`."""

    enabled: bool = True
    after_s: Seconds = Field(
        default=30.0,
        description="a stop shorter than this is a micro-stop (a jam cleared at the machine): "
        "paging a supervisor for it is noise, so the alert waits this long",
    )
    severity: Severity = Severity.CRITICAL
    keep_firing_for_s: Seconds = 0.0


class LineStopConfig(Strict):
    """One grouped alert when (a fraction of) a line's machines are stopped at once."""

    enabled: bool = True
    fraction: float = Field(default=1.0, gt=0, le=1)
    states: list[MachineState] = Field(
        default_factory=lambda: [MachineState.DOWN, MachineState.IDLE, MachineState.CHANGEOVER],
        min_length=1,
    )
    min_machines: int = Field(
        default=2, ge=1,
        description="a line with fewer machines reporting (not offline, not in a planned "
        "stop) gets no line alert: each machine's own stop alert says it all",
    )
    for_s: Seconds = 0.0
    severity: Severity = Severity.CRITICAL
    keep_firing_for_s: Seconds = 0.0


class DefectSpikeConfig(Strict):
    """Reject rate over a recent window against a baseline and an absolute threshold."""

    enabled: bool = True
    machines: list[Id] | None = Field(default=None, description="all machines if unset")
    window_parts: int = Field(default=30, ge=1, description="the last N parts")
    window_s: float = Field(default=120.0, gt=0, description="the last T seconds")
    baseline_window_s: float = Field(default=3600.0, gt=0)
    baseline_min_parts: int = Field(default=100, ge=1)
    factor: float = Field(default=3.0, gt=1, description="spike = rate >= factor x baseline")
    min_rate: float = Field(
        default=0.05, ge=0, le=1,
        description="the baseline rule ignores rates below this: with a clean baseline, "
        "one reject would otherwise be a spike",
    )
    absolute_rate: float | None = Field(default=0.15, gt=0, le=1)
    min_parts: int = Field(default=10, ge=1, description="no verdict on fewer parts")
    significance: float = Field(
        default=0.001, gt=0, le=1,
        description="a window is a spike only if that many rejects would be this unlikely at "
        "the normal rate (binomial tail); keeps 2 rejects in 30 parts from paging anyone",
    )
    for_s: Seconds = 0.0
    keep_firing_for_s: Seconds = 60.0
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _baseline_longer_than_window(self) -> DefectSpikeConfig:
        if self.baseline_window_s <= self.window_s:
            raise ValueError("baseline_window_s must be longer than window_s")
        return self


WE_RULES = (1, 2, 3, 4)
NELSON_RULES = (1, 2, 3, 4, 5, 6, 7, 8)


class SpcChartConfig(Strict):
    """A control chart: `p` for a machine's reject fraction, `imr` for a process value."""

    id: Id
    machine: Id
    kind: Literal["p", "imr"]
    signal: str | None = Field(default=None, description="the process value an I-MR chart plots")
    rule_set: Literal["western_electric", "nelson"] = "western_electric"
    rules: list[int] | None = Field(default=None, description="a subset of the set's rules")
    baseline_points: int = Field(default=25, ge=2, description="limits from the first K points")
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    subgroup_parts: int = Field(default=50, ge=1, description="p-chart: parts per subgroup")
    for_s: Seconds = 0.0
    keep_firing_for_s: Seconds = 300.0
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _consistent(self) -> SpcChartConfig:
        if self.kind == "imr" and not self.signal:
            raise ValueError("an imr chart needs the `signal` it plots")
        if self.kind == "p" and self.signal is not None:
            raise ValueError("a p chart plots the reject fraction; it takes no `signal`")
        known = WE_RULES if self.rule_set == "western_electric" else NELSON_RULES
        unknown = sorted(set(self.rules or ()) - set(known))
        if unknown:
            raise ValueError(f"{self.rule_set} has rules {list(known)}; not {unknown}")
        if (self.baseline_start is None) != (self.baseline_end is None):
            raise ValueError("give both baseline_start and baseline_end, or neither")
        if self.baseline_start and self.baseline_end:
            if self.baseline_start.tzinfo is None or self.baseline_end.tzinfo is None:
                raise ValueError("baseline times need a UTC offset, e.g. 2026-03-02T06:00Z")
            if self.baseline_end <= self.baseline_start:
                raise ValueError("baseline_end must be after baseline_start")
        return self

    @property
    def enabled_rules(self) -> tuple[int, ...]:
        known = WE_RULES if self.rule_set == "western_electric" else NELSON_RULES
        return tuple(sorted(self.rules)) if self.rules else known


class ThresholdRuleConfig(Strict):
    """A process value above (or below) a level for `for_s`, clearing only at `clear`."""

    id: Id
    machine: Id
    signal: str
    above: float | None = None
    below: float | None = None
    clear: float | None = Field(default=None, description="hysteresis: default is the level")
    for_s: Seconds = 0.0
    keep_firing_for_s: Seconds = 0.0
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _one_level(self) -> ThresholdRuleConfig:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError("`clear` must be at or below `above`")
            if self.below is not None and self.clear < self.below:
                raise ValueError("`clear` must be at or above `below`")
        return self

    @property
    def level(self) -> float:
        level = self.above if self.above is not None else self.below
        assert level is not None
        return level

    @property
    def clear_level(self) -> float:
        return self.clear if self.clear is not None else self.level


class StaleRuleConfig(Strict):
    """No sample for `after_s`: from a source, a machine, or one signal of a machine.

    With neither `source` nor `machine`, it watches every machine.
    """

    source: Id | None = None
    machine: Id | None = None
    signal: str | None = None
    after_s: float = Field(gt=0)
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _target(self) -> StaleRuleConfig:
        if self.source is not None and (self.machine is not None or self.signal is not None):
            raise ValueError("a stale rule watches a `source` or a `machine` (and signal)")
        if self.signal is not None and self.machine is None:
            raise ValueError("a `signal` belongs to a `machine`")
        return self


class RulesConfig(Strict):
    machine_stop: MachineStopConfig = MachineStopConfig()
    line_stop: LineStopConfig = LineStopConfig()
    defect_spike: DefectSpikeConfig = DefectSpikeConfig()
    thresholds: list[ThresholdRuleConfig] = Field(default_factory=list)
    stale: list[StaleRuleConfig] = Field(default_factory=list)
    spc: list[SpcChartConfig] = Field(default_factory=list)
    resolved_retention_s: float = Field(
        default=900.0, ge=0, description="how long a resolved alert stays listed"
    )
    max_input_lag_s: float = Field(
        default=60.0, gt=0,
        description="data older than this (replays, backfill) updates no live alert; keep it "
        "above each machine's stale_after_s and (no_count_stop_factor - 1) x ideal cycle "
        "time, by which the trackers back-date the stops they detect on the clock",
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesConfig:
        for name, items in (("thresholds", self.thresholds), ("spc", self.spc)):
            ids = [item.id for item in items]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"{name}: duplicate ids {dupes}")
        return self


def cross_check_rules(
    rules: RulesConfig, machines: dict[str, str], sources: set[str]
) -> list[tuple[str, str]]:
    """References from rules to machines and sources, as (path, message) for the config loader."""
    problems: list[tuple[str, str]] = []

    def machine(path: str, mid: str | None) -> None:
        if mid is not None and mid not in machines:
            problems.append((path, f"unknown machine {mid!r}"))

    for i, mid in enumerate(rules.defect_spike.machines or []):
        machine(f"rules.defect_spike.machines[{i}]", mid)
    for i, threshold in enumerate(rules.thresholds):
        machine(f"rules.thresholds[{i}].machine", threshold.machine)
    for i, chart in enumerate(rules.spc):
        machine(f"rules.spc[{i}].machine", chart.machine)
    for i, stale in enumerate(rules.stale):
        machine(f"rules.stale[{i}].machine", stale.machine)
        if stale.source is not None and stale.source not in sources:
            problems.append((f"rules.stale[{i}].source", f"unknown source {stale.source!r}"))
    return problems
