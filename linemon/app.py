"""The composition root: builds sources, engine and historian from the config and runs them.

Data path: a source emits a batch of samples -> the engine turns them into events ->
the events go to live subscribers (the API's hub, notifications), and samples and events
to the historian spool together; once both are durable the batch is done (only then may
an MQTT source acknowledge). Live subscribers do not wait for the disk: a stop reaches
the board and the phone while its record is being committed, and a slow or failing disk
never blinds the board. Nor does the engine's tick wait for it: the events it makes (an
alert firing, a machine gone stale) are announced at once and spooled, in order, by one
writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from collector.historian.historian import Historian
from collector.sources.base import Source, build_sources
from collector.sources.supervisor import supervise
from linemon.allocator import fix_mmap_threshold, return_free_memory_every
from linemon.config import PlantConfig
from linemon.listeners import Listeners
from linemon.model import (
    Alert,
    AlertState,
    DowntimeEvent,
    Event,
    Sample,
    Silence,
    StateChanged,
)
from rules.engine import Engine
from rules.notify.notifier import Notifier, build_notifier

log = logging.getLogger("linemon.app")
Clock = Callable[[], datetime]
TICK_S = 1.0


def wall_clock() -> datetime:
    return datetime.now(UTC)


def settle_heap() -> None:
    """Tune the garbage collector and the C allocator for a long-running ingest process.

    What exists after start-up (libraries, config, engine) lives as long as the process, so
    it is frozen out of the collector's full passes, which would otherwise scan it again
    and again. Young objects are collected in bigger, rarer batches. Measured with
    `python -m bench.ingest_mqtt`: about 35 % more messages per CPU-second. Large transient
    buffers get mappings of their own, so that freeing them returns their memory
    (linemon/allocator.py).
    """
    fix_mmap_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


class AlertNotFound(LookupError):
    """No active alert has that fingerprint."""


class AlertConflict(Exception):
    """The alert is in a state that does not allow the change (only a firing one is acked)."""


class _Write(NamedTuple):
    """Events for the ordered writer; `done` learns when they are on disk, and `after` is a
    batch they must not be spooled before."""

    events: list[Event]
    done: asyncio.Future[None] | None = None
    after: asyncio.Future[None] | None = None


class Linemon:
    def __init__(self, config: PlantConfig, clock: Clock = wall_clock) -> None:
        self.config = config
        self.clock = clock
        self.engine = Engine(config, clock())
        machine_lines = {m.id: line.id for line, m in config.machines()}
        self.historian = Historian(config.historian, machine_lines=machine_lines, clock=clock)
        self.sources: list[Source] = build_sources(config)
        self.notifier: Notifier | None = build_notifier(
            config.notifications, clock=clock, timezone=config.site.timezone,
            shift_at=self._shift_name)
        self.listeners = Listeners()
        self._tasks: list[asyncio.Task[None]] = []
        # Events made outside a source's batch (ticks, gaps, people), spooled in order by
        # one writer: the tick never waits for the disk (a stop's alert would wait behind
        # the previous tick's commit), and the spool still gets them in the order made.
        self._writes: asyncio.Queue[_Write] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._ticked_inline = False
        self.started = asyncio.Event()

    # --- pipeline --------------------------------------------------------------------

    async def ingest(self, samples: list[Sample]) -> None:
        """Returns once the samples and their events are durable."""
        now = self.clock()
        events = self.engine.on_samples(samples, now)
        ticked = self._tick_on_change(events, now)
        if ticked:
            self.listeners.send(events + ticked)
        elif events:  # most batches: no copy of their events
            self.listeners.send(events)
        writer = self._writer  # read once: start() or stop() may run while we wait below
        if writer is None:  # not started (tools, tests): nobody to queue for
            await self.historian.write(samples, events)
            if ticked:
                await self.historian.write_events(ticked)
            return
        # The tick's events go to the one writer, in order with the tick task's, but not
        # before this batch is stored: a stop's alert never lands before the stop, even
        # when the spool fails and both are retried.
        stored = asyncio.get_running_loop().create_future() if ticked else None
        if ticked:
            self._writes.put_nowait(_Write(ticked, after=stored))
        try:
            await self.historian.write(samples, events)
        finally:
            if stored is not None:
                stored.set_result(None)  # stored or not, the tick's events are the writer's

    async def publish(self, events: list[Event]) -> None:
        """Events made outside the pipeline (a person's acknowledgement) go the same way."""
        await self._publish(events)

    async def _publish(self, events: list[Event], *, durable: bool = True) -> None:
        """Announce, and queue for the spool; with `durable`, return once on disk."""
        if not events:
            return
        self._announce(events)
        if self._writer is None:  # not started (tools, tests): nobody to queue for
            await self.historian.write_events(events)
            return
        done = asyncio.get_running_loop().create_future() if durable else None
        self._writes.put_nowait(_Write(events, done))
        if done is not None:
            await done

    async def _write_events(self) -> None:
        while True:
            events, done, after = await self._writes.get()
            try:
                if after is not None:
                    await asyncio.wait([after])
                await self.historian.write_events(events)  # retried while the spool fails
            except asyncio.CancelledError:
                if done is not None:
                    done.cancel()
                raise
            except Exception as err:  # the historian closing under it
                if done is None:
                    log.exception("%d events could not be spooled", len(events))
                elif not done.done():
                    done.set_exception(err)
            else:
                if done is not None and not done.done():
                    done.set_result(None)
            finally:
                self._writes.task_done()

    def _announce(self, events: list[Event]) -> None:
        if any(isinstance(e, StateChanged) for e in events):
            self._wake.set()  # a tick-made stop's alert must not wait a second
        self.listeners.send(events)

    def _tick_on_change(self, events: list[Event], now: datetime) -> list[Event]:
        """A state change ticks the engine in the same step: a stop's alert (a rule without
        a hold) is announced with the state change that caused it, not one loop turn later
        from the tick task, behind whatever else is ready by then."""
        if not any(isinstance(e, StateChanged) for e in events):
            return []
        self._ticked_inline = True
        self._wake.set()  # the tick task re-plans (this tick may have begun a hold)
        return self.engine.on_tick(now)

    # --- what people do (the API calls these; scaled out, the line's engine does) -------

    async def acknowledge(self, fingerprint: str, by: str) -> Alert:
        """Acknowledge a firing alert; again: no change, the first acknowledgement stands."""
        alerts = self.engine.alerts
        alert = next((a for a in alerts.active() if a.fingerprint == fingerprint), None)
        if alert is None:
            raise AlertNotFound(f"no active alert {fingerprint!r}; see GET /api/v1/alerts")
        if alert.state is not AlertState.FIRING:
            raise AlertConflict(f"the alert is {alert.state}; only a firing alert can be "
                                "acknowledged")
        change = alerts.acknowledge(fingerprint, by, self.clock())
        if change is None:
            return alert
        await self._publish([change])
        return change.alert

    async def silence(self, matchers: dict[str, str], starts: datetime, ends: datetime,
                      by: str, comment: str) -> Silence:
        return self.engine.alerts.silence(matchers, starts, ends, by, comment)

    async def expire_silence(self, silence_id: str) -> Silence | None:
        return self.engine.alerts.expire_silence(silence_id, self.clock())

    async def code_downtime(self, downtime_id: str, reason_code: str, reason_text: str | None,
                            note: str | None, by: str) -> DowntimeEvent:
        _, after = await self.historian.query.code_downtime(
            downtime_id, reason_code, reason_text, note, by=by, at=self.clock())
        return after

    def listen(self, maxsize: int = 10_000) -> asyncio.Queue[Event]:
        return self.listeners.listen(maxsize)

    def unlisten(self, queue: asyncio.Queue[Event]) -> None:
        self.listeners.unlisten(queue)

    def _shift_name(self, at: datetime) -> str | None:
        shift = self.engine.calendar.shift_at(at)
        return shift.name if shift is not None else None

    def _on_gap(self, source: str, at: datetime, why: str) -> None:
        events = self.engine.source_lost(source, at, why)
        events += self._tick_on_change(events, self.clock())
        if not events:
            return
        self.listeners.send(events)
        if self._writer is not None:
            self._writes.put_nowait(_Write(events))
            return
        self._tasks = [t for t in self._tasks if not t.done()]  # gaps recur for months
        self._tasks.append(asyncio.create_task(self.historian.write_events(events),
                                               name=f"gap:{source}"))

    async def _tick(self) -> None:
        """Every second, when a pending alert's hold ends, and at once after a state change
        the tick itself made (a machine gone stale); `_tick_on_change` ticks for the rest."""
        while True:
            now = self.clock()
            self._wake.clear()
            if not self._ticked_inline:  # else `_tick_on_change` ticked just now, and woke us
                await self._publish(self.engine.on_tick(now), durable=False)
            self._ticked_inline = False
            wait = TICK_S
            due = self.engine.alerts.next_due()
            if due is not None:
                wait = min(wait, max(0.0, (due - self.clock()).total_seconds()) + 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.historian.start()
        self._writer = asyncio.create_task(self._write_events(), name="event-writer")
        if self.notifier is not None:  # before the sources: no alert change goes unheard
            await self.notifier.start(self.listen())
        for source in self.sources:
            self._tasks.append(asyncio.create_task(
                supervise(source, self.ingest, on_gap=self._on_gap, clock=self.clock),
                name=f"source:{source.name}",
            ))
        self._tasks.append(asyncio.create_task(self._tick(), name="engine-tick"))
        self._tasks.append(asyncio.create_task(return_free_memory_every(),
                                               name="return-free-memory"))
        settle_heap()
        self.started.set()

    async def stop(self, timeout_s: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A library stuck in a handshake must not hold the shutdown hostage.
            _, stuck = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in stuck:
                log.warning("task %s did not stop within %.0fs", task.get_name(), timeout_s)
        self._tasks.clear()
        if self._writer is not None:  # what the tasks published goes to the spool first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writes.join(), timeout_s)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            while not self._writes.empty():  # left after the timeout: their waiters learn it
                done = self._writes.get_nowait().done
                if done is not None and not done.done():
                    done.set_exception(RuntimeError("linemon stopped before they were spooled"))
        gc.unfreeze()  # what start-up froze may be garbage now (tests start many instances)
        if self.notifier is not None:
            await self.notifier.stop()
        await self.historian.close()

    def health(self) -> dict[str, object]:
        now = self.clock()
        out: dict[str, object] = {
            "sources": {
                s.name: {
                    "connected": s.stats.connected,
                    "received": s.stats.received,
                    "rejected": dict(s.stats.rejected),
                    "duplicates": s.stats.duplicates,
                    "reconnects": s.stats.reconnects,
                    "slow_decodes": s.stats.slow_decodes,
                    "last_error": s.stats.last_error,
                    "last_message_age_s": {
                        machine: round((now - at).total_seconds(), 3)
                        for machine, at in s.stats.last_message_at.items()
                    },
                }
                for s in self.sources
            },
            "historian": self.historian.health(),
        }
        if self.notifier is not None:
            out["notifications"] = self.notifier.health()
        return out
