"""The notifier: engine events in, messages out; owns the dispatcher, the outbox and the worker.

    Linemon._publish -> queue -> dispatcher (pure) -> outbox (on disk) -> worker -> channels

It runs beside the engine in the same process and reads the same injected clock. The
dispatcher's state (forming groups, escalation timers) lives in memory; what must not
be lost (every message decided on) is in the outbox before anything is sent. After a
restart the engine finds its alerts again, and the dispatcher decides the same messages
with the same idempotency keys, which the outbox ignores when it already has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from linemon.config import ConfigError, ConfigIssue, resolve_secret
from linemon.model import AlertChanged, Event
from rules.notify.channels import Channel, build_channel
from rules.notify.config import NotificationsConfig
from rules.notify.dispatch import Cancel, Delivery, Dispatcher, Intent, ShiftAt
from rules.notify.message import AlertBrief, Message
from rules.notify.outbox import Outbox
from rules.notify.tokens import AckSigner, TokenError
from rules.notify.worker import DeliveryWorker

log = logging.getLogger("linemon.notify")
Clock = Callable[[], datetime]
TICK_S = 0.5  # escalation and group timers are checked at least this often
PRUNE_EVERY = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Redemption:
    """What an ack link stands for: the alerts of one message, and who it was sent to."""

    alerts: list[AlertBrief]
    incident: str
    recipient: str
    channel: str
    first_use: bool
    used_at: datetime | None
    used_by: str | None


class Notifier:
    def __init__(self, config: NotificationsConfig, *, clock: Clock, timezone: str,
                 shift_at: ShiftAt) -> None:
        self.config = config
        self.clock = clock
        self.signer = _signer(config)
        self.dispatcher = Dispatcher(config, timezone=timezone, shift_at=shift_at,
                                     signer=self.signer)
        self.outbox = Outbox(config.outbox.path)
        self.channels: dict[str, Channel] = {c.name: build_channel(c) for c in config.channels}
        self.worker = DeliveryWorker(self.outbox, self.channels, config.retry, clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned: datetime | None = None
        self._stopping = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, events: asyncio.Queue[Event]) -> None:
        await self.outbox.open()
        await self._prune()
        self.dispatcher.restore(await self.outbox.open_incidents(), self.clock())
        self._tasks = [
            asyncio.create_task(self._consume(events), name="notify-dispatch"),
            asyncio.create_task(self.worker.run(), name="notify-worker"),
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Decide and queue what is still in the event queue, let sends in flight finish
        (briefly), then close. What is queued and unsent waits in the outbox for next time."""
        self._stopping.set()
        dispatch = self._tasks[:1]
        if dispatch:
            _, stuck = await asyncio.wait(dispatch, timeout=timeout_s)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*dispatch, return_exceptions=True)
        await self.worker.stop()
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        self._tasks = []
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        await self.outbox.close()

    # --- the loop -------------------------------------------------------------------------

    async def _consume(self, events: asyncio.Queue[Event]) -> None:
        # Not cancelled on stop: events taken off the queue are always decided and queued.
        while not self._stopping.is_set():
            batch: list[Event] = []
            with contextlib.suppress(TimeoutError):
                batch.append(await asyncio.wait_for(events.get(), self._wait_s()))
            while not events.empty():
                batch.append(events.get_nowait())
            try:
                await self.handle([e for e in batch if isinstance(e, AlertChanged)])
            except Exception:  # the outbox said no (disk full): keep going, say so
                log.exception("notifications: could not queue messages")

    async def handle(self, changes: list[AlertChanged]) -> None:
        """Feed alert changes, then run the timers at the clock's now; queue what results."""
        intents: list[Intent] = []
        for change in changes:
            intents += self.dispatcher.on_change(change)
        now = self.clock()
        intents += self.dispatcher.on_tick(now)
        await self._apply(intents)
        # After the messages: a crash in between re-decides them, and the keys dedupe.
        await self.outbox.save_incidents(self.dispatcher.take_records(), now)
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            await self._prune()

    def _wait_s(self) -> float:
        due, now = self.dispatcher.next_due(), self.clock()
        if due is None or due <= now:
            return TICK_S  # nothing scheduled, or scheduled but paused: look again soon
        return max(0.01, min(TICK_S, (due - now).total_seconds()))

    async def _apply(self, intents: list[Intent]) -> None:
        added = 0
        pending: list[Delivery] = []
        for intent in intents:  # in order: a cancel applies to what was queued before it
            if isinstance(intent, Delivery):
                pending.append(intent)
                continue
            added += await self.outbox.add(pending)
            pending = []
            assert isinstance(intent, Cancel)
            cancelled = await self.outbox.cancel(intent.incident, intent.reason)
            if cancelled:
                log.info("incident %s: %d queued messages cancelled (%s)", intent.incident,
                         cancelled, intent.reason)
        added += await self.outbox.add(pending)
        if added:
            self.worker.wake()

    async def _prune(self) -> None:
        now = self.clock()
        self._pruned = now
        removed = await self.outbox.prune(now - timedelta(days=self.config.outbox.keep_days))
        if removed:
            log.info("notifications: %d old deliveries removed from the log", removed)

    # --- ack links ------------------------------------------------------------------------

    async def redeem(self, token: str, client: str = "unknown") -> Redemption:
        """Check a link and use it up (recording the client's address). Raises TokenError:
        invalid, expired or unknown."""
        if self.signer is None:
            raise TokenError("invalid", "acknowledge links are not configured on this plant")
        now = self.clock()
        signed = self.signer.verify(token, now)
        row, first_use = await self.outbox.redeem(signed.nonce, now, client)
        if row is None:
            raise TokenError("invalid", "this link is not known here (any more)")
        message = Message.from_json(row.message)
        used_at = datetime.fromtimestamp(row.link_used_at, now.tzinfo) if row.link_used_at \
            else None
        return Redemption(message.alerts, row.incident, row.recipient, row.channel, first_use,
                          used_at, row.link_used_by)

    def health(self) -> dict[str, object]:
        s = self.worker.stats
        return {"delivered": s.delivered, "retried": s.retried, "failed": s.failed,
                "in_flight": s.in_flight, "incidents": len(self.dispatcher.incidents())}


def _signer(config: NotificationsConfig) -> AckSigner | None:
    links = config.ack_links
    if links is None:
        return None
    at = "notifications.ack_links.secret_env"
    secret = resolve_secret(links.secret_env, at)
    assert secret is not None
    try:
        return AckSigner(secret, links.ttl_s)
    except ValueError as err:
        raise ConfigError("environment", [ConfigIssue(
            path=at, message=f"{links.secret_env}: {err}; refusing to start")]) from None


def build_notifier(config: NotificationsConfig, *, clock: Clock, timezone: str,
                   shift_at: ShiftAt) -> Notifier | None:
    """None when nothing is configured to send (no channels or no routes, or disabled)."""
    if not config.active:
        return None
    return Notifier(config, clock=clock, timezone=timezone, shift_at=shift_at)
