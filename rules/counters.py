"""Turn the counters PLCs give into parts produced.

PLCs report cumulative counters that roll over at a maximum and restart at 0
when the PLC restarts. A decrease is a rollover only when the counter was near
its configured maximum *and* the parts that wrap would imply could have been
made since the previous reading (a machine cannot beat its ideal cycle time by
much); otherwise it is a reset, and the new value is the count since the reset.
A PLC that restarts while its counter is near the maximum is the case this tells
apart: 9 600 -> 0 within ten seconds is a reset, not 400 parts.
Either way the delta is never negative and the first reading only sets the
baseline (parts made before we were watching are not ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A counter may run ahead of the ideal cycle time by this factor (a conservative ideal
# cycle time, parts counted in bursts) before a wrap is judged impossible.
PLAUSIBLE_SPEEDUP = 2.0
PLAUSIBLE_SLACK_PARTS = 5


@dataclass(slots=True)
class CumulativeCounter:
    rollover_at: int | None = None  # the largest value the counter holds before wrapping to 0
    last: int | None = None
    resets: int = 0
    rollovers: int = 0

    def update(self, value: int, max_parts: float | None = None) -> int:
        """Feed one reading; return the parts it adds (>= 0).

        `max_parts`: the most parts the machine can have made since the previous reading
        (None: unknown, any wrap near the maximum is believed).
        """
        if value < 0:
            return 0
        previous, self.last = self.last, value
        if previous is None:
            return 0
        if value >= previous:
            return value - previous
        if self.rollover_at is not None and previous > self.rollover_at * 0.9:
            wrapped = self.rollover_at - previous + 1 + value
            if max_parts is None or wrapped <= max_parts:
                self.rollovers += 1
                return wrapped
        self.resets += 1
        return value


@dataclass(slots=True)
class PartCounter:
    """Good and reject totals from whichever pair of counters a machine reports.

    Reported totals only ever grow: when e.g. total and reject arrive as separate
    samples, good = total - reject may dip between the two; the dip is held back
    rather than emitted as negative parts.
    """

    rollover_at: int | None = None
    counters: dict[str, CumulativeCounter] = field(default_factory=dict)
    sums: dict[str, int] = field(default_factory=dict)
    emitted_good: int = 0
    emitted_reject: int = 0

    def update(self, signal: str, value: int, max_parts: float | None = None) -> tuple[int, int]:
        """Feed one counter reading; return (new good parts, new reject parts)."""
        counter = self.counters.get(signal)
        if counter is None:
            counter = self.counters[signal] = CumulativeCounter(self.rollover_at)
        self.sums[signal] = self.sums.get(signal, 0) + counter.update(value, max_parts)
        good, reject = self._totals()
        new_good = max(0, good - self.emitted_good)
        new_reject = max(0, reject - self.emitted_reject)
        self.emitted_good += new_good
        self.emitted_reject += new_reject
        return new_good, new_reject

    def _totals(self) -> tuple[int, int]:
        s = self.sums
        if "total_count" in s:
            if "reject_count" in s:
                return s["total_count"] - s["reject_count"], s["reject_count"]
            if "good_count" in s:
                return s["good_count"], s["total_count"] - s["good_count"]
            return s["total_count"], 0
        return s.get("good_count", 0), s.get("reject_count", 0)


def plausible_parts(elapsed_s: float, ideal_cycle_time_s: float) -> float:
    """The most parts a machine can make in `elapsed_s`, generously."""
    return elapsed_s / ideal_cycle_time_s * PLAUSIBLE_SPEEDUP + PLAUSIBLE_SLACK_PARTS
