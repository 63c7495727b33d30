"""Statistical process control: p-charts for reject fraction, I-MR charts for process values.

Limits come from a baseline -- the first K points, or the points inside a configured
period -- and are then frozen: limits that keep moving would follow a drifting process
and never flag it. Every point is turned into a z-score (distance from the centre line
in sigmas; for a p-chart sigma depends on the subgroup size), so one set of run rules
serves both charts. A rule is reported when the newest point completes its pattern, and
keeps being reported while later points extend it.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rules.rules_config import SpcChartConfig

D2 = 1.128  # d2 for moving ranges of two: sigma = MR-bar / d2
D4 = 3.267  # D4 for n = 2: the moving-range chart's upper limit is D4 x MR-bar
HISTORY = 15  # the longest pattern (Nelson 7) spans 15 points

RULE_TEXT = {
    ("western_electric", 1): "1 point beyond 3 sigma",
    ("western_electric", 2): "2 of 3 points beyond 2 sigma on one side",
    ("western_electric", 3): "4 of 5 points beyond 1 sigma on one side",
    ("western_electric", 4): "8 points in a row on one side of the centre line",
    ("nelson", 1): "1 point beyond 3 sigma",
    ("nelson", 2): "9 points in a row on one side of the centre line",
    ("nelson", 3): "6 points in a row steadily rising or falling",
    ("nelson", 4): "14 points in a row alternating up and down",
    ("nelson", 5): "2 of 3 points beyond 2 sigma on one side",
    ("nelson", 6): "4 of 5 points beyond 1 sigma on one side",
    ("nelson", 7): "15 points in a row within 1 sigma",
    ("nelson", 8): "8 points in a row beyond 1 sigma, on both sides",
}


def _side(z: float) -> int:
    return (z > 0) - (z < 0)


def _same_side_run(z: Sequence[float], length: int) -> bool:
    if len(z) < length:
        return False
    side = _side(z[-1])
    return side != 0 and all(_side(v) == side for v in z[-length:])


def _k_of_m_beyond(z: Sequence[float], k: int, m: int, sigmas: float) -> bool:
    """The newest point and at least k-1 of the m-1 before it are beyond `sigmas` on one side."""
    if len(z) < k or abs(z[-1]) <= sigmas:
        return False
    side = _side(z[-1])
    return sum(1 for v in z[-m:] if _side(v) == side and abs(v) > sigmas) >= k


def _trend(z: Sequence[float], length: int) -> bool:
    if len(z) < length:
        return False
    tail = z[-length:]
    pairs = list(itertools.pairwise(tail))
    return all(b > a for a, b in pairs) or all(b < a for a, b in pairs)


def _alternating(z: Sequence[float], length: int) -> bool:
    if len(z) < length:
        return False
    tail = z[-length:]
    steps = [_side(b - a) for a, b in itertools.pairwise(tail)]
    return 0 not in steps and all(a == -b for a, b in itertools.pairwise(steps))


WESTERN_ELECTRIC = {
    1: lambda z: abs(z[-1]) > 3,
    2: lambda z: _k_of_m_beyond(z, 2, 3, 2),
    3: lambda z: _k_of_m_beyond(z, 4, 5, 1),
    4: lambda z: _same_side_run(z, 8),
}
NELSON = {
    1: lambda z: abs(z[-1]) > 3,
    2: lambda z: _same_side_run(z, 9),
    3: lambda z: _trend(z, 6),
    4: lambda z: _alternating(z, 14),
    5: lambda z: _k_of_m_beyond(z, 2, 3, 2),
    6: lambda z: _k_of_m_beyond(z, 4, 5, 1),
    7: lambda z: len(z) >= 15 and all(abs(v) < 1 for v in z[-15:]),
    8: lambda z: len(z) >= 8 and all(abs(v) > 1 for v in z[-8:])
    and {_side(v) for v in z[-8:]} == {-1, 1},
}


def violated(z: Sequence[float], rule_set: str, rules: Sequence[int]) -> list[int]:
    """Rules (by number) the newest z-score completes; z runs oldest to newest."""
    table = WESTERN_ELECTRIC if rule_set == "western_electric" else NELSON
    return [n for n in rules if z and table[n](z)]


def z_score(value: float, center: float, sigma: float) -> float:
    if sigma > 0:
        return (value - center) / sigma
    # A baseline without spread: anything off the centre is infinitely far out.
    return 0.0 if value == center else math.copysign(math.inf, value - center)


@dataclass(frozen=True, slots=True)
class ChartPoint:
    at: datetime
    value: float
    z: float
    violations: tuple[str, ...]  # e.g. ("nelson 2: 9 points in a row on one side ...",)


@dataclass(slots=True)
class ControlChart:
    """Shared by both kinds: baseline collection, freezing, z history and rule checks."""

    config: SpcChartConfig
    baseline: list[tuple[datetime, float, float]] = field(default_factory=list)
    center: float | None = None
    spread: float | None = None  # I-MR: MR-bar; p: unused (sigma comes from n)
    history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    last: ChartPoint | None = None
    violating_since: datetime | None = None
    period_missed: bool = False  # the baseline period held too few points to set limits

    @property
    def frozen(self) -> bool:
        return self.center is not None

    def _collect(self, at: datetime, value: float, weight: float) -> bool:
        """Feed the baseline; True when the point was used for it (so it is not judged)."""
        c = self.config
        if c.baseline_start is not None and c.baseline_end is not None and not self.period_missed:
            if at < c.baseline_start:
                return True  # before the baseline period: neither limits nor judgement
            if at < c.baseline_end:
                self.baseline.append((at, value, weight))
                return True
            if len(self.baseline) >= 2:
                self._freeze()
                return False
            # Too few points in the period to set limits: fall back to the first K after it.
            self.period_missed = True
            self.baseline.clear()
        self.baseline.append((at, value, weight))
        if len(self.baseline) >= c.baseline_points:
            self._freeze()
        return True

    def _freeze(self) -> None:
        raise NotImplementedError

    def _judge(self, at: datetime, value: float, z: float, extra: list[str]) -> ChartPoint:
        self.history.append(z)
        c = self.config
        found = [f"{c.rule_set.replace('_', ' ')} {n}: {RULE_TEXT[(c.rule_set, n)]}"
                 for n in violated(list(self.history), c.rule_set, c.enabled_rules)]
        point = ChartPoint(at, value, z, tuple(found + extra))
        if point.violations and self.violating_since is None:
            self.violating_since = at
        elif not point.violations:
            self.violating_since = None
        self.last = point
        return point


@dataclass(slots=True)
class IndividualsChart(ControlChart):
    """I-MR: individual values, sigma from the average moving range of the baseline."""

    previous: float | None = None

    def add(self, at: datetime, value: float) -> ChartPoint | None:
        previous, self.previous = self.previous, value
        if not self.frozen and self._collect(at, value, 1.0):
            return None
        assert self.center is not None and self.spread is not None
        extra = []
        if previous is not None and abs(value - previous) > D4 * self.spread:
            extra.append("moving range beyond its upper limit")
        return self._judge(at, value, z_score(value, self.center, self.spread / D2), extra)

    def _freeze(self) -> None:
        values = [v for _, v, _ in self.baseline]
        self.center = sum(values) / len(values)
        ranges = [abs(b - a) for a, b in itertools.pairwise(values)]
        self.spread = sum(ranges) / len(ranges) if ranges else 0.0
        self.baseline.clear()


@dataclass(slots=True)
class RejectFractionChart(ControlChart):
    """p-chart: reject fraction per subgroup of `subgroup_parts` parts (whole batches)."""

    parts: int = 0
    rejects: int = 0

    def add_parts(self, at: datetime, good: int, reject: int) -> ChartPoint | None:
        self.parts += good + reject
        self.rejects += reject
        if self.parts < self.config.subgroup_parts:
            return None
        n, p = self.parts, self.rejects / self.parts
        self.parts = self.rejects = 0
        if not self.frozen and self._collect(at, p, n):
            return None
        assert self.center is not None
        sigma = math.sqrt(self.center * (1 - self.center) / n)
        return self._judge(at, p, z_score(p, self.center, sigma), [])

    def _freeze(self) -> None:
        parts = sum(n for _, _, n in self.baseline)
        self.center = sum(p * n for _, p, n in self.baseline) / parts  # pooled p-bar
        self.spread = 0.0
        self.baseline.clear()


def build_chart(config: SpcChartConfig) -> IndividualsChart | RejectFractionChart:
    return IndividualsChart(config) if config.kind == "imr" else RejectFractionChart(config)
