"""Long-term history on InfluxDB: 1-minute sample aggregates, computed by linemon itself.

Why linemon and not a Flux task: a task runs on the server's clock and cannot know that
an hour of samples is still waiting in linemon's spool after an outage; it would
aggregate the gap as empty and never look back. linemon knows: it only aggregates whole
minutes older than the oldest sample still spooled, and each run recomputes the last
hour, which is harmless because the aggregates are idempotent points (same series and
minute). It needs no task permission either.

Each run (every 60 s): Flux aggregates count/sum/min/max/last of `sample.value`
(quality != bad) per line/machine/signal and minute; linemon writes them as `sample_1m`
points to the downsampled bucket. The watermark lives in the spool's meta table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..lineprotocol import encode_point
from ..query import align
from ..schema import SAMPLE_1M, from_ns, to_ns
from ..spool import Spool

if TYPE_CHECKING:
    from .influx import InfluxStore

log = logging.getLogger(__name__)

MINUTE_NS = 60_000_000_000
LOOKBACK_NS = 3600 * 1_000_000_000  # recompute the last hour: late samples get counted
MAX_SPAN_NS = 6 * 3600 * 1_000_000_000  # catch up in slices after a long outage
WATERMARK = "downsample_watermark_ns"

AGGREGATE_FLUX = """
data = from(bucket: p_bucket) |> range(start: p_start, stop: p_stop)
  |> filter(fn: (r) => r._measurement == "sample" and r._field == "value" and r.quality != "bad")
  |> group(columns: ["line", "machine", "signal"])
  |> sort(columns: ["_time"])
data |> aggregateWindow(every: 1m, fn: count, createEmpty: false, timeSrc: "_start")
  |> yield(name: "count")
data |> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")
  |> yield(name: "sum")
data |> aggregateWindow(every: 1m, fn: min, createEmpty: false, timeSrc: "_start")
  |> yield(name: "min")
data |> aggregateWindow(every: 1m, fn: max, createEmpty: false, timeSrc: "_start")
  |> yield(name: "max")
data |> aggregateWindow(every: 1m, fn: last, createEmpty: false, timeSrc: "_start")
  |> yield(name: "last")
"""


class Downsampler:
    def __init__(self, store: InfluxStore, spool: Spool, *, clock: Callable[[], datetime],
                 interval_s: float = 60.0) -> None:
        self._store, self._spool, self._clock = store, spool, clock
        self._interval = interval_s
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
            try:
                while await self.run_once():  # more slices to catch up
                    pass
                self._last_error = None
            except Exception as err:  # keep going: the next run retries
                self._last_error = f"{type(err).__name__}: {err}"[:500]
                log.warning("downsampling failed (will retry): %s", self._last_error)
            await asyncio.sleep(self._interval)

    async def run_once(self) -> bool:
        """Aggregate one slice; True if there is more to catch up."""
        safe_end = align(to_ns(self._clock()), MINUTE_NS)
        oldest = await self._spool.oldest_ts("sample")
        if oldest is not None:  # never aggregate minutes whose samples are still spooled
            safe_end = min(safe_end, align(oldest, MINUTE_NS))
        raw = await self._spool.get_meta(WATERMARK)
        wm = int(raw) if raw else safe_end
        start = wm - LOOKBACK_NS
        stop = min(safe_end, start + MAX_SPAN_NS)
        if stop <= start:
            return False
        lines = await self.aggregate(start, stop)
        batch = self._store.cfg.batch_size
        for i in range(0, len(lines), batch):
            await self._store.write("aggregate", lines[i : i + batch])
        new_wm = max(wm, stop)
        await self._spool.set_meta(WATERMARK, str(new_wm))
        self._watermark_ns = new_wm
        return stop < safe_end and stop > wm

    async def aggregate(self, start_ns: int, stop_ns: int) -> list[str]:
        params = {"p_bucket": self._store.cfg.bucket, "p_start": from_ns(start_ns),
                  "p_stop": from_ns(stop_ns)}
        rows = await self._store.flux(AGGREGATE_FLUX, params)
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in rows:
            key = (r.get("line"), r.get("machine"), r.get("signal"), to_ns(r["_time"]))
            merged.setdefault(key, {})[r["result"]] = r["_value"]
        lines = []
        for (line, machine, signal, ts), f in merged.items():
            if not f.get("count"):
                continue
            fields = {"count": int(f["count"]), "sum": float(f["sum"]), "min": float(f["min"]),
                      "max": float(f["max"]), "last": float(f["last"])}
            tags = {"line": line, "machine": machine, "signal": signal}
            lines.append(encode_point(SAMPLE_1M, tags, fields, ts))
        return lines
