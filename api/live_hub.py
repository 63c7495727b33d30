"""The live hub: engine events in, line snapshots out, to REST and to WebSocket boards.

One listener queue on linemon feeds the hub. A line snapshot is serialized once and
reused until an event touches that line or the clock moves to the next second, so a
hundred boards polling cost one serialization per line per second, and no request ever
reaches the database.

Each line with WebSocket subscribers has a feed: it pushes the snapshot, plus a summary
of what changed since the last push, at most once per `min_interval_s`, and at least
every `heartbeat_s` even when nothing happened (time in state and OEE move on their own).
A machine's state change or an alert change is the news a board exists for: it goes out
at once, not at the next slot, yet no sooner than `URGENT_GAP_S` after the last urgent
push, so a flapping machine cannot flood the boards (a heartbeat push just before does
not hold it back). A stop alert without a hold comes in the same announcement as its state
change (the engine ticks in the step that made the change), so the two share one push.
A slow client is never waited for: it keeps only the newest snapshot and the changes
that piled up (bounded; overflow is counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from typing import Any

from api.schemas import Line
from linemon.model import (
    AlertChanged,
    DowntimeEnded,
    DowntimeStarted,
    Event,
    PartsProduced,
    StateChanged,
    line_of,
)
from linemon.remote import LiveUnavailable
from linemon.roles import Runtime

log = logging.getLogger("linemon.api.live")
MAX_PENDING_CHANGES = 200
URGENT_GAP_S = 0.05
URGENT_KINDS = {"state", "alert"}


class Subscriber:
    def __init__(self, line: str) -> None:
        self.line = line
        self._snapshot: str | None = None
        self._changes: list[dict[str, Any]] = []
        self._ready = asyncio.Event()
        self._urgent = False
        self.urgent = False  # the message last taken carries a state or alert change
        self.seq = 0

    def offer(self, snapshot: str, changes: list[dict[str, Any]]) -> int:
        """Queue the newest snapshot; returns how many changes did not fit (a slow client)."""
        self._snapshot = snapshot
        self._urgent = self._urgent or any(c["kind"] in URGENT_KINDS for c in changes)
        room = MAX_PENDING_CHANGES - len(self._changes)
        self._changes += changes[:room]
        self._ready.set()
        return max(0, len(changes) - room)

    async def next_message(self) -> str:
        await self._ready.wait()
        self._ready.clear()
        snapshot, changes = self._snapshot, self._changes
        self._snapshot, self._changes = None, []
        self.urgent, self._urgent = self._urgent, False
        assert snapshot is not None
        self.seq += 1
        return message(self.seq, changes, snapshot)


def message(seq: int, changes: list[dict[str, Any]], snapshot: str) -> str:
    # The snapshot is already JSON; splice it in rather than parse and dump it again.
    head = json.dumps({"type": "snapshot", "seq": seq, "changes": changes})
    return head[:-1] + ', "line": ' + snapshot + "}"


class LineFeed:
    def __init__(self, hub: LiveHub, line: str) -> None:
        self.hub, self.line = hub, line
        self.subscribers: set[Subscriber] = set()
        self.changes: list[dict[str, Any]] = []
        self.dirty = asyncio.Event()
        self.rush = asyncio.Event()  # an urgent change waits for no slot
        self.task: asyncio.Task[None] | None = None

    def note(self, change: dict[str, Any] | None) -> None:
        if change is not None:
            if change["kind"] in URGENT_KINDS:
                self.rush.set()
            if len(self.changes) < MAX_PENDING_CHANGES:
                self.changes.append(change)
            else:  # a flood between two pushes: the snapshot still has the truth
                self.hub.dropped_changes += 1
        self.dirty.set()

    async def run(self) -> None:
        last = time.monotonic()
        last_urgent = last - URGENT_GAP_S
        while self.subscribers:
            heartbeat_in = max(0.0, last + self.hub.heartbeat_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(heartbeat_in):
                    await self.dirty.wait()
            urgent = await self._next_slot(last, last_urgent)
            self.dirty.clear()
            self.rush.clear()
            changes, self.changes = self.changes, []
            try:
                snapshot = self.hub.snapshot(self.line)
            except LiveUnavailable:  # the line's engine is away: silence lets boards say STALE
                self.changes = changes
                last = time.monotonic()
                continue
            for sub in list(self.subscribers):
                self.hub.dropped_changes += sub.offer(snapshot, changes)
            last = time.monotonic()
            if urgent:
                last_urgent = last

    async def _next_slot(self, last: float, last_urgent: float) -> bool:
        """The rate limit: one push per `min_interval_s`, or `URGENT_GAP_S` after the last
        urgent push for urgent news; True when this push is an urgent one."""
        while True:
            if self.rush.is_set():
                gap = min(URGENT_GAP_S, self.hub.min_interval_s)
                wait = last_urgent + gap - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                return True
            wait = last + self.hub.min_interval_s - time.monotonic()
            if wait <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.rush.wait()


class LiveHub:
    def __init__(self, linemon: Runtime, *, min_interval_s: float = 1.0,
                 heartbeat_s: float = 1.0, max_subscribers: int = 500) -> None:
        self.linemon = linemon
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.max_subscribers = max_subscribers
        self.events_total: Counter[str] = Counter()
        self.serializations = 0
        self.dropped_changes = 0
        self._feeds: dict[str, LineFeed] = {}
        self._cache: dict[str, tuple[float, str]] = {}
        self._queue: asyncio.Queue[Event] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return sum(len(f.subscribers) for f in self._feeds.values())

    async def start(self) -> None:
        self._queue = self.linemon.listen()
        self._task = asyncio.create_task(self._consume(self._queue), name="api-live-hub")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *(f.task for f in self._feeds.values())] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._queue is not None:
            self.linemon.unlisten(self._queue)
        self._task, self._queue = None, None
        self._feeds.clear()
        self._cache.clear()

    # --- snapshots ---------------------------------------------------------------------

    def snapshot(self, line: str) -> str:
        """The line's snapshot as JSON text, cached while nothing changed (hub running only)."""
        lm = self.linemon
        now = lm.clock()
        second = now.timestamp() // 1
        cached = self._cache.get(line)
        if cached is not None and cached[0] == second and self.running:
            return cached[1]
        text = Line.of(lm.engine.line_view(line, now), lm.engine.alerts.active()).model_dump_json()
        self.serializations += 1
        if self.running:
            self._cache[line] = (second, text)
        return text

    # --- subscriptions -----------------------------------------------------------------

    def subscribe(self, line: str) -> Subscriber | None:
        """None when the hub is full (the client should retry later)."""
        if self.subscribers >= self.max_subscribers:
            return None
        feed = self._feeds.get(line)
        if feed is None:
            feed = self._feeds[line] = LineFeed(self, line)
        sub = Subscriber(line)
        feed.subscribers.add(sub)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(feed.run(), name=f"api-live-{line}")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        feed = self._feeds.get(sub.line)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if not feed.subscribers:
            if feed.task is not None:
                feed.task.cancel()
            del self._feeds[sub.line]

    # --- events ------------------------------------------------------------------------

    async def _consume(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            try:
                self.on_event(event)
            except Exception:  # one odd event must not stop the boards
                log.exception("live hub could not handle %r", event)

    def on_event(self, event: Event) -> None:
        self.events_total[_kind(event)] += 1
        line = line_of(event)
        if line is None:
            self._cache.clear()  # an alert without a line may show on any board
            targets = list(self._feeds.values())
        else:
            self._cache.pop(line, None)
            feed = self._feeds.get(line)
            targets = [feed] if feed is not None else []
        change = summarize(event)
        for feed in targets:
            feed.note(change)


def _kind(event: Event) -> str:
    return {StateChanged: "state_changed", DowntimeStarted: "downtime_started",
            DowntimeEnded: "downtime_ended", PartsProduced: "parts_produced",
            AlertChanged: "alert_changed"}.get(type(event), type(event).__name__)


def summarize(event: Event) -> dict[str, Any] | None:
    """What a board shows as a change; parts only move the counters (the snapshot has them)."""
    if isinstance(event, StateChanged):
        return {"kind": "state", "machine": event.machine, "at": event.at.isoformat(),
                "state": str(event.state), "previous": str(event.previous),
                "reason_code": event.reason_code, "reason_text": event.reason_text}
    if isinstance(event, DowntimeStarted | DowntimeEnded):
        d = event.event
        kind = "downtime_started" if isinstance(event, DowntimeStarted) else "downtime_ended"
        return {"kind": kind, "machine": d.machine, "id": d.id, "start": d.start.isoformat(),
                "end": d.end.isoformat() if d.end else None, "category": str(d.category),
                "reason_code": d.reason_code, "micro_stop": d.micro_stop}
    if isinstance(event, AlertChanged):
        a = event.alert
        return {"kind": "alert", "change": str(event.change), "fingerprint": a.fingerprint,
                "rule_id": a.rule_id, "machine": a.labels.get("machine"),
                "severity": str(a.severity), "state": str(a.state), "message": a.message,
                "at": event.at.isoformat()}
    return None
