"""Threshold rules on process values, and stale-data rules.

A threshold is a latch with hysteresis: it trips when the value goes beyond the level and
releases only when it comes back past the clear level, so a value hovering at the level
does not flap. The rule's `for` is the alert's pending time (alerts.py), counted from the
sample that tripped the latch.

Stale data is judged on receive time, by the clock: no sample for `after_s` from a
source, a machine or one of its signals. Something never heard from counts from start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from linemon.model import Quality, Sample
from rules.alerts import Condition
from rules.rules_config import StaleRuleConfig, ThresholdRuleConfig

_BAD = Quality.BAD  # numeric() and StaleWatch.seen run per sample: no enum lookup there


@dataclass(slots=True)
class ThresholdWatch:
    rule: ThresholdRuleConfig
    line: str
    tripped_since: datetime | None = None
    value: float | None = None

    @property
    def rule_id(self) -> str:
        return f"threshold:{self.rule.id}"

    def on_value(self, at: datetime, value: float) -> None:
        r = self.rule
        self.value = value
        if r.above is not None:
            trips, releases = value > r.above, value <= r.clear_level
        else:
            trips, releases = value < r.level, value >= r.clear_level
        if self.tripped_since is None and trips:
            self.tripped_since = at
        elif self.tripped_since is not None and releases:
            self.tripped_since = None

    def condition(self) -> Condition | None:
        if self.tripped_since is None:
            return None
        r = self.rule
        side = f"above {r.above:g}" if r.above is not None else f"below {r.below:g}"
        return Condition(
            rule_id=self.rule_id,
            labels={"line": self.line, "machine": r.machine, "signal": r.signal},
            severity=r.severity,
            since=self.tripped_since,
            for_s=r.for_s,
            keep_firing_for_s=r.keep_firing_for_s,
            value=self.value,
            message=f"{r.machine} {r.signal} {self.value:g} is {side}"
            + (f" (clears at {r.clear_level:g})" if r.clear is not None else ""),
        )


def numeric(sample: Sample) -> float | None:
    """A usable process value, or None (bad quality, text)."""
    if sample.quality is _BAD or isinstance(sample.value, str):
        return None
    return float(sample.value)


@dataclass(frozen=True, slots=True)
class _StaleTarget:
    rule: StaleRuleConfig
    key: tuple[str, ...]  # ("source", name) | ("machine", id) | ("signal", id, signal)
    labels: dict[str, str]
    what: str


class StaleWatch:
    def __init__(self, rules: list[StaleRuleConfig], machines: dict[str, str]) -> None:
        self._targets: list[_StaleTarget] = []
        for rule in rules:
            if rule.source is not None:
                self._targets.append(_StaleTarget(rule, ("source", rule.source),
                                                  {"source": rule.source},
                                                  f"source {rule.source}"))
                continue
            for mid in [rule.machine] if rule.machine else sorted(machines):
                labels = {"line": machines.get(mid, ""), "machine": mid}
                if rule.signal is None:
                    self._targets.append(_StaleTarget(rule, ("machine", mid), labels, mid))
                else:
                    self._targets.append(_StaleTarget(
                        rule, ("signal", mid, rule.signal), {**labels, "signal": rule.signal},
                        f"{mid} {rule.signal}"))
        self._last: dict[tuple[str, ...], datetime] = {}
        self._started: datetime | None = None
        # Only what a rule watches is tracked (seen() runs for every sample).
        self._sources = {t.key[1] for t in self._targets if t.key[0] == "source"}
        self._machines = {t.key[1] for t in self._targets if t.key[0] == "machine"}
        self._signals = {t.key for t in self._targets if t.key[0] == "signal"}

    def start(self, now: datetime) -> None:
        if self._started is None:
            self._started = now

    def seen(self, sample: Sample) -> None:
        # Bad quality is a sample that carries no data: it does not make the data fresh.
        if not self._targets or sample.quality is _BAD:
            return
        at = sample.received_ts
        keys = []
        if sample.source in self._sources:
            keys.append(("source", sample.source))
        if sample.machine in self._machines:
            keys.append(("machine", sample.machine))
        if self._signals and ("signal", sample.machine, sample.signal) in self._signals:
            keys.append(("signal", sample.machine, sample.signal))
        for key in keys:
            if key not in self._last or self._last[key] < at:
                self._last[key] = at

    def conditions(self, now: datetime) -> list[Condition]:
        found: list[Condition] = []
        for target in self._targets:
            last = self._last.get(target.key)
            reference = last or self._started
            if reference is None:
                continue
            stale_at = reference + timedelta(seconds=target.rule.after_s)
            if now < stale_at:
                continue
            heard = f"nothing since {last:%H:%M:%S} UTC" if last else "nothing received yet"
            found.append(Condition(
                rule_id="stale_data",
                labels=target.labels,
                severity=target.rule.severity,
                since=stale_at,
                value=(now - reference).total_seconds(),
                message=f"no data from {target.what} for {target.rule.after_s:g} s ({heard})",
            ))
        return found
