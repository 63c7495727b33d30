"""What every source checks on its decoded samples before they go out: repeats and counters.

- A sample identical to the last one of its tag (same source timestamp, value and
  quality) is a duplicate: a re-subscription's initial value, a Sparkplug rebirth, a
  redelivered message. It is dropped and counted.
- Except right after an outage: then the repeat is the news that the tag is live again
  with its old value, so it goes out stamped with the time it was received. Without it
  the machine would stay offline until its value next changes.
- A cumulative counter going down without a configured rollover near its maximum is
  passed on (the engine treats it as a reset) but counted as `counter_backwards`, so a
  PLC that restarts or a gateway that replays old values shows up in the metrics.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from collector.sources.base import RateLimitedLog, SourceStats
from linemon.model import Quality, Sample, Signal, Value

COUNTERS = {Signal.GOOD_COUNT, Signal.REJECT_COUNT, Signal.TOTAL_COUNT}
_BAD = Quality.BAD  # an enum attribute lookup costs about 0.1 µs; screen() runs per sample
ROLLOVER_ZONE = 0.9  # a drop from above 90 % of counter_max is a rollover, not a reset

Tag = tuple[str, str]  # (machine, signal)


class TagScreen:
    def __init__(
        self,
        source: str,
        stats: SourceStats,
        log: RateLimitedLog,
        tags: list[Tag],
        counter_max: dict[str, int | None],
    ) -> None:
        self.source = source
        self.stats = stats
        self.tags = tags
        self._log = log
        self._counter_max = counter_max
        self._last: dict[Tag, tuple[datetime, Value, Quality]] = {}
        self._counts: dict[Tag, float] = {}
        self._in_gap: set[Tag] = set()

    def screen(self, samples: list[Sample]) -> list[Sample]:
        # One loop with the lookups hoisted: it runs for every sample a source decodes.
        out = []
        last, in_gap, bad = self._last, self._in_gap, _BAD
        for sample in samples:
            tag = (sample.machine, sample.signal)
            quality = sample.quality
            if quality is bad:
                if tag not in in_gap:  # else already marked: a second "unknown" says nothing
                    in_gap.add(tag)
                    out.append(sample)
                continue
            fingerprint = (sample.source_ts, sample.value, quality)
            repeat = last.get(tag) == fingerprint
            if in_gap and tag in in_gap:  # (`in_gap and`: no tuple hashing while it is empty)
                in_gap.discard(tag)
                if repeat:
                    out.append(replace(sample, source_ts=max(sample.received_ts,
                                                             sample.source_ts)))
                    continue
            elif repeat:
                self.stats.duplicates += 1
                continue
            last[tag] = fingerprint
            if sample.signal in COUNTERS:
                self._check_counter(tag, sample)
            out.append(sample)
        return out

    def outage(self, at: datetime, tags: list[Tag] | None = None) -> list[Sample]:
        """Bad-quality samples that mark the start of an outage of `tags` (default: all)."""
        bad = [Sample(m, s, 0, at, at, Quality.BAD, self.source) for m, s in tags or self.tags]
        return self.screen(bad)

    def _check_counter(self, tag: Tag, sample: Sample) -> None:
        value = sample.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        previous = self._counts.get(tag)
        self._counts[tag] = value
        if previous is None or value >= previous:
            return
        limit = self._counter_max.get(sample.machine)
        if limit is not None and previous > limit * ROLLOVER_ZONE:
            return
        self.stats.rejected["counter_backwards"] += 1  # counted, yet passed on: a reset
        self._log.warning("counter_backwards", "source %s: %s.%s went back from %s to %s "
                          "(treated as a counter reset)", self.source, sample.machine,
                          sample.signal, previous, value)
