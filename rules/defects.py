"""Defect spikes: is a machine's reject rate running away right now?

Two recent windows are judged: the last N parts (quick on a fast machine) and the last T
seconds (quick on a slow one). Either is a spike when it holds at least `min_parts` parts
and its reject rate reaches the absolute threshold, or reaches `factor` x the baseline
(the rate over the longer window before it) while also above `min_rate` -- with a clean
baseline, factor x 0 would make a single reject a spike.

Parts arrive in batches (`PartsProduced` carries deltas), so windows are made of whole
batches. Cumulative sums over a time-ordered list make every window a bisect, not a scan:
this runs on every tick for every machine.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rules.rules_config import DefectSpikeConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INT64_MAX = 2**63 - 1


def _us(at: datetime) -> int:
    """Microseconds since the epoch: exact (a timedelta is whole microseconds), and 8 bytes
    in an array instead of a 48-byte datetime plus an 8-byte list slot."""
    return (at - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class WindowRate:
    name: str  # "last 30 parts", "last 120 s"
    parts: int
    rejects: int

    @property
    def rate(self) -> float:
        return self.rejects / self.parts if self.parts else 0.0


@dataclass(frozen=True, slots=True)
class SpikeVerdict:
    spiking: bool
    window: WindowRate | None  # the window that spikes (or the parts window when none does)
    baseline_rate: float | None  # None: too few parts in the baseline to use it
    why: str


class DefectSpikeDetector:
    def __init__(self, config: DefectSpikeConfig) -> None:
        self.config = config
        # One entry per batch, kept for the baseline window (an hour by default: 1,800
        # batches per machine at a part every 2 s). Typed arrays, 24 bytes a batch; lists of
        # datetimes and ints took ~110 (measured), which grew the process by ~10 MiB per
        # 50 machines over the first hour.
        self._at = array("q")  # µs since the epoch (_us), sorted
        self._parts = array("q", [0])  # cumulative, with a leading 0: window sums are differences
        self._rejects = array("q", [0])
        self._last_at: datetime | None = None  # the newest batch's time, as given
        self.since: datetime | None = None  # when the current spike began
        self.last: SpikeVerdict | None = None
        # What _judge needs of the (frozen) config in every call, made once.
        self._baseline_us = timedelta(seconds=config.baseline_window_s) // _US
        self._window_us = timedelta(seconds=config.window_s) // _US
        self._parts_name = f"last {config.window_parts} parts"
        self._time_name = f"last {config.window_s:g} s"
        self._too_few = f"fewer than {config.min_parts} parts"
        # The last verdict and the window sums it was judged on (see _judge).
        self._judged: tuple[tuple[int, int, int, int, float | None], SpikeVerdict] | None = None

    def add(self, at: datetime, good: int, reject: int) -> None:
        if good + reject <= 0:
            return
        us = _us(at)
        if self._at and us < self._at[-1]:
            us, at = self._at[-1], self._last_at  # sorted: a part is never older than the last
        parts, rejects = self._parts[-1] + good + reject, self._rejects[-1] + reject
        if parts > _INT64_MAX:
            return  # no counter makes 2^63 parts: a broken reading, and no room in an int64
        self._last_at = at
        self._at.append(us)  # the three grow together, or the windows would be off by one
        self._parts.append(parts)
        self._rejects.append(rejects)
        self._evaluate(at, us)  # a spike begins at the part that tips it, not at the next tick

    def evaluate(self, now: datetime) -> SpikeVerdict:
        return self._evaluate(now, _us(now))

    def _evaluate(self, now: datetime, now_us: int) -> SpikeVerdict:
        first = self._prune(now_us)
        verdict = self._judge(now_us, first)
        if verdict.spiking and self.since is None:
            self.since = now
        elif not verdict.spiking:
            self.since = None
        self.last = verdict
        return verdict

    # --- windows ---------------------------------------------------------------------

    def _judge(self, now_us: int, first: int) -> SpikeVerdict:
        """`first`: the index of the first batch inside the baseline window (from _prune)."""
        c = self.config
        parts, rejects = self._parts, self._rejects
        parts_start = max(first, self._parts_start(c.window_parts))
        time_start = max(first, bisect_right(self._at, now_us - self._window_us))
        # The baseline is what came before both windows, so a spike does not raise its own bar.
        baseline_end = min(time_start, parts_start)
        base_parts = parts[baseline_end] - parts[first]
        base_rate = None
        if base_parts >= c.baseline_min_parts:
            base_rate = (rejects[baseline_end] - rejects[first]) / base_parts
        # The verdict depends on nothing but these sums (and the config): when they are the
        # ones of the last verdict, so is the verdict. On a tick, and on a new batch of good
        # parts at a steady rate, they mostly are, and the judging below is skipped.
        sums = (parts[-1] - parts[parts_start], rejects[-1] - rejects[parts_start],
                parts[-1] - parts[time_start], rejects[-1] - rejects[time_start], base_rate)
        if self._judged is not None and self._judged[0] == sums:
            return self._judged[1]
        verdict = self._verdict(*sums)
        self._judged = (sums, verdict)
        return verdict

    def _verdict(self, parts_n: int, parts_rejects: int, time_n: int, time_rejects: int,
                 base_rate: float | None) -> SpikeVerdict:
        c = self.config
        # The rate that counts as normal: the baseline, or, without one, the share of the
        # absolute threshold that `factor` allows.
        normal = base_rate if base_rate is not None else (c.absolute_rate or c.min_rate) / c.factor
        for name, parts, rejects in ((self._parts_name, parts_n, parts_rejects),
                                     (self._time_name, time_n, time_rejects)):
            if parts < c.min_parts:
                continue
            if binomial_tail(rejects, parts, max(normal, 1e-4)) > c.significance:
                continue  # as many rejects as chance alone gives now and then
            window = WindowRate(name, parts, rejects)
            if c.absolute_rate is not None and window.rate >= c.absolute_rate:
                return SpikeVerdict(True, window, base_rate,
                                    f"{window.rate:.1%} rejects over the {window.name} "
                                    f"(threshold {c.absolute_rate:.1%})")
            if base_rate is not None and window.rate >= max(c.min_rate, c.factor * base_rate):
                return SpikeVerdict(True, window, base_rate,
                                    f"{window.rate:.1%} rejects over the {window.name}, "
                                    f"at least {c.factor:g}x the baseline {base_rate:.1%}")
        enough = parts_n >= c.min_parts or time_n >= c.min_parts
        why = "reject rate normal" if enough else self._too_few
        return SpikeVerdict(False, WindowRate(self._parts_name, parts_n, parts_rejects),
                            base_rate, why)

    def _parts_start(self, count: int) -> int:
        """Index of the first batch of the smallest run of newest batches holding `count` parts."""
        total = self._parts[-1]
        # the largest i with total - parts[i] >= count, i.e. parts[i] <= total - count
        i = bisect_right(self._parts, total - count) - 1
        return max(i, 0)

    def _prune(self, now_us: int) -> int:
        """Forget batches older than the baseline window, in chunks to keep it amortised;
        return the index of the first batch inside the window."""
        old = bisect_left(self._at, now_us - self._baseline_us)
        if old and (old >= 256 or old * 2 >= len(self._at)):
            del self._at[:old]
            del self._parts[:old]
            del self._rejects[:old]
            return 0
        return old


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k rejects in n parts are at rate p."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p >= 1:
        return 1.0
    # 1 - P(X < k), summing the few terms below k in log space (n can be in the thousands).
    log_q = math.log1p(-p)
    log_p = math.log(p)
    log_n = math.lgamma(n + 1)
    below = 0.0
    for i in range(k):
        below += math.exp(
            log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )
    return max(0.0, 1.0 - below)
