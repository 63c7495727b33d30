"""Long-term history on InfluxDB: 1-minute sample aggregates, computed by linemon itself.

Why linemon and not a Flux task: a task runs on the server's clock and cannot know that
an hour of samples is still waiting in linemon's spool after an outage; it would
aggregate the gap as empty and never look back. linemon knows: it only aggregates whole
minutes older than the oldest sample still spooled, and it recomputes the minutes that
samples arriving late were stored into (the forwarder reports the oldest timestamp it
stored), up to an hour back; the aggregates are idempotent points (same series and
minute). The first pass after a start recomputes the whole last hour, since what arrived
late before the start is not known. It needs no task permission either.

Each pass (every 60 s): Flux aggregates count/sum/min/max/last of `sample.value`
(quality != bad) per series and minute, in slices of at most ten minutes; linemon merges
the series of a signal (its quality and source tags split it) and writes the result as
`sample_1m` points per line/machine/signal to the downsampled bucket. The watermark lives
in the spool's meta table. A pass that fails part-way (influxd down, a query timed out)
is resumed from the slice that failed, not started over.

Recomputing a whole hour every minute was what this did before: at 10,000 samples/s that is
36 M points for influxd to aggregate each minute (its queries timed out) and ~150,000 result
rows parsed on the event loop, which stalled the live API for seconds.

Each aggregate is a pipeline of its own, `from |> range |> filter |> aggregateWindow`, so
that influxd computes it in its storage engine. Grouping by signal (or sorting, or sharing
one `from` between the five) first makes it read every point into its query engine
instead: a minute of 10,000 samples/s cost influxd 14 s of CPU that way, 0.7 s this way
(measured on a 2-core box), and the hour's first pass timed out over and over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..linebatch import LineBatch
from ..lineprotocol import encode_point
from ..query import align
from ..schema import SAMPLE_1M, from_ns, to_ns
from ..spool import Spool
from .influx_query import ns_of

if TYPE_CHECKING:
    from .influx import InfluxStore

log = logging.getLogger(__name__)

MINUTE_NS = 60_000_000_000
LOOKBACK_NS = 3600 * 1_000_000_000  # late samples up to an hour old get counted
SLICE_NS = 10 * MINUTE_NS  # per query: bounded work for influxd and for parsing its answer
WATERMARK = "downsample_watermark_ns"

_SAMPLES = """from(bucket: p_bucket) |> range(start: p_start, stop: p_stop)
  |> filter(fn: (r) => r._measurement == "sample" and r._field == "value" and r.quality != "bad")"""
AGGREGATES = ("count", "sum", "min", "max", "last")
_KEEP = '\n  |> keep(columns: ["_start", "_time", "_value", "line", "machine", "signal"])'
AGGREGATE_FLUX = "\n".join(
    [f'{_SAMPLES}\n  |> aggregateWindow(every: 1m, fn: {fn}, createEmpty: false, timeSrc: "_start")'
     f'{_KEEP}\n  |> yield(name: "{fn}")' for fn in AGGREGATES[:4]]
    # last() keeps the point's own time, which picks the latest among a signal's series
    + [f'{_SAMPLES}\n  |> window(every: 1m)\n  |> last(){_KEEP}\n  |> yield(name: "last")'])
COLUMNS = ("result", "_start", "_time", "_value", "line", "machine", "signal")


@dataclass
class _Minute:
    """One signal's aggregates over one minute, merged from its series."""

    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    last: float = math.nan
    last_ns: int = -1
    kinds: set[str] = field(default_factory=set)

    def add(self, kind: str, value: str, at: str) -> None:
        self.kinds.add(kind)
        if kind == "count":
            self.count += int(value)
        elif kind == "sum":
            self.sum += float(value)
        elif kind == "min":
            self.min = min(self.min, float(value))
        elif kind == "max":
            self.max = max(self.max, float(value))
        elif kind == "last":
            at_ns = ns_of(at)
            if at_ns >= self.last_ns:
                self.last, self.last_ns = float(value), at_ns


def minute_lines(rows: list[tuple[str, ...]]) -> list[str]:
    """The answer's cells (COLUMNS) merged per signal and minute, as `sample_1m` lines; the
    store runs this off the event loop when the answer is big (a 10-minute slice)."""
    merged: dict[tuple[str | None, str, str, int], _Minute] = {}
    minute_ns: dict[str, int] = {}  # the few window starts, each parsed once
    for kind, start, at, value, line, machine, signal in rows:
        window = start if kind == "last" else at
        ts = minute_ns.get(window)
        if ts is None:
            ts = minute_ns[window] = ns_of(window)
        key = (line or None, machine, signal, ts)
        minute = merged.get(key)
        if minute is None:
            minute = merged[key] = _Minute()
        minute.add(kind, value, at)
    lines = []
    for (line, machine, signal, ts), m in merged.items():
        # The five pipelines read the store one after the other: a sample stored in
        # between can be in some and not others. Its minute is left to the next pass,
        # which recomputes it since stored_since() reports that sample.
        if not m.count or len(m.kinds) < len(AGGREGATES):
            continue
        fields = {"count": m.count, "sum": m.sum, "min": m.min, "max": m.max, "last": m.last}
        tags = {"line": line, "machine": machine, "signal": signal}
        lines.append(encode_point(SAMPLE_1M, tags, fields, ts))
    return lines


class Downsampler:
    def __init__(self, store: InfluxStore, spool: Spool, *, clock: Callable[[], datetime],
                 stored_since: Callable[[], int | None], interval_s: float = 60.0) -> None:
        """`stored_since()`: the oldest sample timestamp (ns) stored since it was last called."""
        self._store, self._spool, self._clock = store, spool, clock
        self._stored_since = stored_since
        self._interval = interval_s
        self._first = True  # the first pass after a start recomputes the whole lookback
        self._resume_ns: int | None = None  # where a pass that failed part-way stopped
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._watermark_ns: int | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="linemon-historian-downsample")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def health(self) -> dict[str, Any]:
        wm = self._watermark_ns
        return {"watermark": None if wm is None else from_ns(wm).isoformat(),
                "last_error": self._last_error}

    async def _loop(self) -> None:
        while True:
            # First one interval after the start: the first pass recomputes a whole hour
            # (parsing its answer takes seconds with thousands of series), which must not
            # land on the start-up's own burst (replaying the spool, resubscribing).
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
                self._last_error = None
            except Exception as err:  # keep going: the next run retries
                self._last_error = f"{type(err).__name__}: {err}"[:500]
                log.warning("downsampling failed (will retry): %s", self._last_error)

    async def run_once(self) -> None:
        """One pass: aggregate every whole minute that is new or got late samples."""
        safe_end = align(to_ns(self._clock()), MINUTE_NS)
        oldest = await self._spool.oldest_ts("sample")
        if oldest is not None:  # never aggregate minutes whose samples are still spooled
            safe_end = min(safe_end, align(oldest, MINUTE_NS))
        raw = await self._spool.get_meta(WATERMARK)
        wm = int(raw) if raw else safe_end
        stored = self._stored_since()
        late = None if stored is None else align(stored, MINUTE_NS)
        if self._resume_ns is not None:  # the minutes before it are done
            start = self._resume_ns if late is None else min(self._resume_ns, late)
        elif self._first:
            start = wm - LOOKBACK_NS
        else:
            start = wm if late is None else min(wm, late)
        start = max(start, wm - LOOKBACK_NS)
        batch = self._store.cfg.batch_size
        self._resume_ns = start
        while start < safe_end:
            stop = min(safe_end, start + SLICE_NS)
            lines = await self.aggregate(start, stop)
            for i in range(0, len(lines), batch):
                await self._store.write("aggregate", LineBatch.of(lines[i : i + batch]))
            if stop > wm:
                wm = stop
                await self._spool.set_meta(WATERMARK, str(wm))
            start = self._resume_ns = stop
        if not raw:  # a new spool: the loop above only saves a watermark that moved
            await self._spool.set_meta(WATERMARK, str(wm))
        self._watermark_ns = wm
        self._first = False
        self._resume_ns = None

    async def aggregate(self, start_ns: int, stop_ns: int) -> list[str]:
        params = {"p_bucket": self._store.cfg.bucket, "p_start": from_ns(start_ns),
                  "p_stop": from_ns(stop_ns)}
        return await self._store.flux_cells(AGGREGATE_FLUX, params, COLUMNS, minute_lines)
