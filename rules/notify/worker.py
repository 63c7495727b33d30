"""The delivery worker: sends what the outbox holds, retries with backoff, records the result.

Each due row is sent in its own task (at most `concurrency` at once), so one slow
receiver never delays another. Rows of one lane (incident, channel, address) go one at
a time and in order. A failure that may pass is retried after initial x factor^n
seconds (capped, and never sooner than the receiver's Retry-After); a permanent one, or
one older than `give_up_after_s`, is marked failed. The clock is injected; waiting is
on an event with a timeout, never a fixed sleep.

Exactly once: a row is marked delivered only after the receiver answered; a crash in
between sends it again with the same idempotency key (header, Message-ID, payload), which
is what receivers dedupe on. `stop()` lets sends in flight finish for a moment first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.notify.channels import Channel, DeliveryError
from rules.notify.config import RetryConfig
from rules.notify.message import Message
from rules.notify.outbox import Outbox, Row

log = logging.getLogger("linemon.notify")
Clock = Callable[[], datetime]
IDLE_WAIT_S = 30.0
LOG_EVERY_S = 60.0


@dataclass(slots=True)
class WorkerStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    in_flight: int = 0


class DeliveryWorker:
    def __init__(self, outbox: Outbox, channels: dict[str, Channel], retry: RetryConfig,
                 clock: Clock, *, concurrency: int = 16) -> None:
        self.outbox = outbox
        self.channels = channels
        self.retry = retry
        self.clock = clock
        self.stats = WorkerStats()
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._lanes: set[tuple[str, str, str]] = set()
        self._rows: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_log: dict[str, datetime] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            for row in await self.outbox.due(now, limit=200, busy=sorted(self._rows)):
                lane = (row.incident, row.channel, row.address)
                if row.id in self._rows or lane in self._lanes:
                    continue
                self._lanes.add(lane)
                self._rows.add(row.id)
                task = asyncio.create_task(self._deliver(row, lane), name=f"deliver:{row.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.stats.in_flight = len(self._rows)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), await self._wait_s(now))

    async def stop(self, grace_s: float = 2.0) -> None:
        """Give sends in flight `grace_s` to finish (fewer repeats after a restart)."""
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _wait_s(self, now: datetime) -> float:
        next_at = await self.outbox.next_at(sorted(self._rows))
        if next_at is None:
            return IDLE_WAIT_S  # nothing, or only rows in flight: their end wakes us
        return min(IDLE_WAIT_S, max(0.0, next_at - now.timestamp()))

    async def _deliver(self, row: Row, lane: tuple[str, str, str]) -> None:
        try:
            async with self._sem:
                await self._send(row)
        finally:
            self._lanes.discard(lane)
            self._rows.discard(row.id)
            self._wake.set()  # the lane's next row may go now

    async def _send(self, row: Row) -> None:
        channel = self.channels.get(row.channel)
        try:
            if channel is None:
                raise DeliveryError(f"no channel {row.channel!r} in the config any more",
                                    permanent=True)
            receipt = await channel.send(Message.from_json(row.message), row.address)
        except DeliveryError as err:
            await self._failed(row, err)
        except Exception as err:  # a channel bug must not kill the worker: retry, and say so
            log.exception("channel %s crashed on delivery %d", row.channel, row.id)
            await self._failed(row, DeliveryError(f"{type(err).__name__}: {err}"))
        else:
            await self.outbox.delivered(row.id, self.clock(), receipt)
            self.stats.delivered += 1

    async def _failed(self, row: Row, err: DeliveryError) -> None:
        now = self.clock()
        attempts = row.attempts + 1
        age = now.timestamp() - row.created_at
        if err.permanent or age >= self.retry.give_up_after_s:
            await self.outbox.failed(row.id, str(err))
            self.stats.failed += 1
            log.warning("notification %s to %s/%s failed for good after %d attempts: %s",
                        row.key, row.channel, row.recipient, attempts, err)
            return
        delay = min(self.retry.max_s, self.retry.initial_s * self.retry.factor ** (attempts - 1))
        if err.retry_after_s is not None:
            delay = min(max(delay, err.retry_after_s), self.retry.max_s)
        await self.outbox.retry(row.id, now + timedelta(seconds=delay), str(err))
        self.stats.retried += 1
        last = self._last_log.get(row.channel)
        if last is None or (now - last).total_seconds() >= LOG_EVERY_S:  # one line per outage
            self._last_log[row.channel] = now
            log.warning("channel %s: delivery failed, retrying (attempt %d, next in %.0f s): %s",
                        row.channel, attempts, delay, err)
