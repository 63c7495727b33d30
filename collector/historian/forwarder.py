"""Store-and-forward: drains the spool into a store, in batches, and never loses a point.

One loop per historian. Each cycle writes, in this order:
1. events (state changes, downtime, parts, OEE, alerts), oldest first and without delay:
   they are few, people query them, and an edit must land after the event it edits;
2. live samples (put since the store last caught up): every `flush_interval_s`, or at once
   when a full batch is waiting;
3. backlog samples (left from an outage or a previous run), at most
   `replay_max_points_per_s`, so that replay never delays live data.

A cycle that wrote events goes on to samples. It used to start over instead, and when
the event loop was saturated (in session 8's soak: the MQTT source's work, on a VM whose
hypervisor took a third of the CPU) every slow cycle found new events: for up to two
minutes at a time only events were written, and the spool grew by a million samples.

Samples go in requests of `batch_size` while the forwarder keeps up. Behind, each full
request doubles the next one, up to CATCHUP_FACTOR x batch_size; the first request that is
not full, or any failure, brings it back. A request costs the forwarder several turns of
the event loop whatever its size, and a turn is slow when the loop is saturated.

A record leaves the spool only after the store acknowledged it. Failures by kind:
unavailable (down, 5xx, 429) -> exponential backoff with cap and jitter, or the server's
Retry-After; rejected (400/422) -> bisect the batch, write the good halves, quarantine the
bad point(s) (no retry loop); auth (401/403/404) -> keep everything, raise a health alarm,
retry at the backoff cap. Writes are idempotent upserts, so a batch written twice (a
timeout after the store committed it) does not duplicate anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .backends.base import (
    Store,
    StoreAuthError,
    StoreError,
    StoreRejected,
    StoreTooLarge,
    StoreUnavailable,
)
from .spool import Spool, SpoolBatch

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 300.0
CATCHUP_FACTOR = 4  # 20,000 points (~3 MB of line protocol) at the default batch_size


class Backoff:
    """Exponential backoff with a cap and jitter (half to full delay)."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 10.0) -> None:
        self.base_s, self.cap_s, self.attempt = base_s, cap_s, 0

    def next(self) -> float:
        delay = min(self.cap_s, self.base_s * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return delay * (0.5 + random.random() / 2)

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, max(1.0, capacity)
        self.chunk = max(1.0, self.capacity / 10)
        self.tokens, self._at = self.capacity, time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, n: int, now: float) -> int:
        """Up to n tokens, but none until a chunk is available: few large writes, not many
        tiny ones."""
        self._refill(now)
        if self.tokens < min(n, self.chunk):
            return 0
        got = min(n, int(self.tokens))
        self.tokens -= got
        return got

    def give_back(self, n: int) -> None:
        self.tokens = min(self.capacity, self.tokens + n)

    def wait_s(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self.tokens >= self.chunk else (self.chunk - self.tokens) / self.rate


@dataclass(slots=True)
class ForwarderCounters:
    written: int = 0  # points the store acknowledged
    replayed: int = 0  # of which from the backlog
    write_requests: int = 0
    # Wall seconds inside the store's write calls: / write_requests is the store's write
    # latency as linemon sees it, the first thing to read when the backlog grows.
    write_seconds: float = 0.0
    failed_requests: int = 0
    quarantined: int = 0
    last_replay_s: float | None = None  # how long the last backlog took to drain


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        store: Store,
        *,
        batch_size: int,
        flush_interval_s: float,
        replay_max_points_per_s: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._spool, self._store = spool, store
        self._batch, self._interval = batch_size, flush_interval_s
        self._size = batch_size  # samples in the next request: grows while behind
        rate = replay_max_points_per_s
        self._bucket = TokenBucket(rate, min(batch_size * CATCHUP_FACTOR, rate))
        self._backoff = backoff or Backoff()
        self.counters = ForwarderCounters()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._urgent = 0
        self._pending_live = 0
        self._last_live_check = 0.0
        self._live_mark = 0  # samples with id <= mark are backlog
        self._backlog = False
        self._lagging = False
        self._replay_started = 0.0
        self._alarm: str | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._last_write_at: datetime | None = None
        self._oldest_sample: int | None = None  # oldest sample ts (ns) stored since taken

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._live_mark = await self._spool.max_id()  # leftovers from a previous run: backlog
        self._backlog = self._spool.counters().depth > 0
        self._replay_started = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="linemon-historian-forwarder")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what can be written within the timeout, then stop (the rest stays spooled)."""
        if self._task is None:
            return
        await self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        # On timeout wait_for cancels the task; the batch in flight stays in the spool.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._task, timeout=max(1.0, timeout_s))
        self._task = None

    def notify(self, kind: str, count: int) -> None:
        """Called after records were spooled."""
        if kind == "sample":
            self._pending_live += count
            if self._pending_live < self._batch:
                return  # let the batch fill up until the flush interval
        self._wake.set()

    async def flush(self, timeout_s: float | None = None, *, ids: Sequence[int] | None = None
                    ) -> bool:
        """Wait until everything spooled so far (or `ids`) has left the spool; False on timeout."""
        target = 0 if ids is not None else await self._spool.max_id()
        self._urgent += 1
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    progress = self._progress
                    if not await self._spool.any_left(ids=ids, max_id=target):
                        return True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(progress.wait(), 0.5)
        except TimeoutError:
            return False
        finally:
            self._urgent -= 1

    def take_oldest_sample(self) -> int | None:
        """The oldest sample timestamp (ns) stored since the last call: where the downsampler
        must look again for samples that arrived late."""
        oldest, self._oldest_sample = self._oldest_sample, None
        return oldest

    def health(self) -> dict[str, Any]:
        sc = self._spool.counters()
        alarm = self._alarm or ("spool_over_budget" if sc.over_budget else None)
        return {
            "ok": alarm is None,
            "alarm": alarm,
            "last_error": self._last_error,
            "last_error_at": _iso(self._last_error_at),
            "last_write_at": _iso(self._last_write_at),
            "backlog": sc.depth,
            "backlog_bytes": sc.bytes,
            "quarantined": sc.quarantined,
            "replaying": self._backlog,
        }

    def counter_dict(self) -> dict[str, Any]:
        return asdict(self.counters)

    # --- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                wrote = await self._cycle()
            except StoreUnavailable as err:
                self._failed("outage", err)
                delay = err.retry_after if err.retry_after is not None else self._backoff.next()
                await self._sleep(min(delay, MAX_RETRY_AFTER_S))
                continue
            except StoreAuthError as err:
                self._failed("auth", err)
                self._backoff.attempt = 32  # no point hammering with a bad token: use the cap
                await self._sleep(self._backoff.next())
                continue
            except Exception as err:  # never die: a bug here would stop all history
                log.exception("historian forwarder cycle failed")
                self._failed("error", err)
                await self._sleep(self._backoff.next())
                continue
            if not wrote:
                await self._idle_wait()

    async def _cycle(self) -> bool:
        """One request of events if any wait, then one of samples if due: both in every
        cycle, since returning after the events starved the samples whenever a cycle took
        longer than the gap between two events."""
        wrote_events = False
        events = await self._spool.peek_batch(self._batch, kind="event")
        if len(events):
            await self._write("event", events)
            await self._succeeded()
            wrote_events = True
        now = time.monotonic()
        size = self._size
        live = SpoolBatch()
        live_due = (self._urgent or self._pending_live >= self._batch
                    or now - self._last_live_check >= self._interval)
        if live_due:
            self._last_live_check = now
            live = await self._spool.peek_batch(size, kind="sample", min_id=self._live_mark + 1)
        backlog = SpoolBatch()
        backlog_done = False
        room = size - len(live)
        if self._backlog and room > 0:
            n = self._bucket.take(room, now)
            if n:
                backlog = await self._spool.peek_batch(n, kind="sample", max_id=self._live_mark)
                self._bucket.give_back(n - len(backlog))
                backlog_done = len(backlog) < n
        if not len(live) and not len(backlog):
            if backlog_done:
                self._replay_done()
            if live_due:
                self._pending_live = 0
            return wrote_events
        await self._write("sample", SpoolBatch.join([backlog, live]))
        full = len(backlog) + len(live) >= size
        self._size = min(2 * size, self._batch * CATCHUP_FACTOR) if full else self._batch
        self.counters.replayed += len(backlog)
        if backlog_done:
            self._replay_done()
        self._pending_live = max(0, self._pending_live - len(live))
        await self._succeeded()
        return True

    async def _write(self, kind: str, batch: SpoolBatch) -> None:
        """Write and ack; on a rejection bisect down to the bad point(s) and quarantine them."""
        try:
            await self._timed_write(kind, batch)
        except (StoreRejected, StoreTooLarge) as err:
            if len(batch) == 1:
                await self._spool.quarantine([(batch.ids[0], str(err)[:2000])])
                self.counters.quarantined += 1
                log.warning("historian quarantined a point the store rejected: %s | %s",
                            str(err)[:300], batch.lines.line(0)[:300])
                self._signal_progress()
                return
            for half in batch.split(len(batch) // 2):
                await self._write(kind, half)
            return
        except StoreError:
            self.counters.failed_requests += 1
            raise
        await self._spool.ack_batch(batch)
        if kind == "sample":
            oldest = min(batch.ts_ns)
            if self._oldest_sample is None or oldest < self._oldest_sample:
                self._oldest_sample = oldest
        self.counters.written += len(batch)
        self._signal_progress()

    async def _timed_write(self, kind: str, batch: SpoolBatch) -> None:
        self.counters.write_requests += 1
        began = time.monotonic()
        try:
            await self._store.write(kind, batch.lines)
        finally:
            self.counters.write_seconds += time.monotonic() - began

    async def _succeeded(self) -> None:
        self._backoff.reset()
        self._alarm = None
        self._last_write_at = datetime.now(UTC)
        if self._lagging:  # back after an outage: what piled up is backlog, replayed capped
            self._lagging = False
            self._live_mark = await self._spool.max_id()
            if not self._backlog:
                self._backlog, self._replay_started = True, time.monotonic()

    def _failed(self, alarm: str, err: BaseException) -> None:
        self._lagging = True
        self._size = self._batch
        text = f"{type(err).__name__}: {err}"[:1000]
        if self._alarm != alarm or self._last_error != text:  # once per incident, not per retry
            log.warning("historian store %s: %s (data kept in the spool)", alarm, err)
        self._alarm = alarm
        self._last_error = text
        self._last_error_at = datetime.now(UTC)

    def _replay_done(self) -> None:
        self._backlog = False
        self.counters.last_replay_s = time.monotonic() - self._replay_started
        log.info("historian backlog replayed in %.1f s", self.counters.last_replay_s)

    def _signal_progress(self) -> None:
        ev, self._progress = self._progress, asyncio.Event()
        ev.set()

    async def _idle_wait(self) -> None:
        now = time.monotonic()
        timeout = self._interval - (now - self._last_live_check)
        if self._backlog:
            timeout = min(timeout, self._bucket.wait_s(now))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(timeout, 0.005))

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()
