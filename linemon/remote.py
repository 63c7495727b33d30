"""The API role: the lines' live state from the engines' bus topics, history from the store.

`RemoteLinemon` offers the API what `Linemon` offers it (config, clock, a history query,
the engine's read side, listeners for events, the actions people take), so every route
serves a remote line exactly as the single process serves its own. It never writes: an
acknowledgement, a silence or a reason code is sent to the engine that owns the line,
which carries it out and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime

from pydantic import ValidationError

from collector.historian.historian import HistoryReader
from collector.historian.query import DowntimeNotFound, HistoryUnavailable
from collector.sources.base import Source
from linemon.app import AlertConflict, AlertNotFound, wall_clock
from linemon.bus import Bus
from linemon.config import BusConfig, PlantConfig
from linemon.listeners import Listeners
from linemon.live_bus import Command, EngineStatus, EventBatch, LineState, Reply, Topics
from linemon.model import Alert, DowntimeEvent, Event, MachineState, Silence
from rules.calendar import ShiftCalendar
from rules.engine import LineView, MachineView
from rules.oee import OeePolicy

log = logging.getLogger("linemon.remote")
Clock = Callable[[], datetime]
CODING_EXTRA_S = 10.0  # an engine waits up to 10 s for the store to take a coding


class LiveUnavailable(Exception):
    """No engine has published the line recently: serving its old view would mislead."""


class EngineUnavailable(Exception):
    """The engine that owns a line did not answer in time."""


class RemoteAlerts:
    """The alert book's read side, from the views of the lines whose engines are live."""

    def __init__(self, engine: RemoteEngine) -> None:
        self._engine = engine

    def active(self) -> list[Alert]:
        return _unique(a for s in self._engine.fresh() for a in s.alerts[:s.active])

    def recent(self) -> list[Alert]:
        return _unique(a for s in self._engine.fresh() for a in s.alerts[s.active:])

    def silences(self, now: datetime) -> list[Silence]:
        found = {s.id: s for state in self._engine.fresh() for s in state.silences}
        return sorted((s for s in found.values() if s.ends_at > now), key=lambda s: s.id)


def _unique(alerts: Iterable[Alert]) -> list[Alert]:
    # An alert without a line label comes with each of its engine's lines.
    return list({a.fingerprint: a for a in alerts}.values())


class RemoteEngine:
    """The engine's read side for the API: views as the engines last published them.

    A view counts as live only when it arrived as a live publish (not as the retained copy
    the broker replays on subscribe, which may be hours old), less than `stale_after_s`
    ago, from an engine not known to be offline.
    """

    def __init__(self, config: PlantConfig, stale_after_s: float, clock: Clock) -> None:
        self.calendar = ShiftCalendar(config.calendar, config.site.timezone)
        self.policy = OeePolicy(config.oee.planned_stops_count_against_availability)
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.views: dict[str, LineState] = {}
        self.received_at: dict[str, datetime] = {}
        self.offline: set[str] = set()  # engines whose status (or will) says offline
        self.alerts = RemoteAlerts(self)
        self._machine_lines = {m.id: line.id for line, m in config.machines()}

    def store(self, line: str, state: LineState, *, retained: bool) -> None:
        self.views[line] = state
        if retained:
            self.received_at.pop(line, None)
        else:
            self.received_at[line] = self.clock()

    def why_not_live(self, line: str, now: datetime) -> str | None:
        state = self.views.get(line)
        if state is None:
            return f"no engine has published line {line!r} yet"
        if state.engine in self.offline:
            return f"the engine for line {line!r} ({state.engine}) is offline"
        at = self.received_at.get(line)
        if at is None:
            return f"waiting for a live update from the engine for line {line!r} ({state.engine})"
        age = (now - at).total_seconds()
        if age > self.stale_after_s:
            return (f"the engine for line {line!r} ({state.engine}) has not published for "
                    f"{age:.0f} s")
        return None

    def fresh(self) -> list[LineState]:
        now = self.clock()
        return [s for line, s in self.views.items() if self.why_not_live(line, now) is None]

    def line_view(self, line: str, now: datetime) -> LineView:
        why = self.why_not_live(line, now)
        if why is not None:
            raise LiveUnavailable(why)
        return self.views[line].view

    def machine_view(self, machine: str, now: datetime) -> MachineView:
        view = self.line_view(self._machine_lines[machine], now)
        return next(m for m in view.machines if m.machine == machine)

    def states(self) -> list[tuple[str, str, MachineState]]:
        return [(m.line, m.machine, m.state) for s in self.fresh() for m in s.view.machines]

    def line_holding(self, fingerprint: str) -> str | None:
        now = self.clock()
        return next((line for line, s in self.views.items()
                     if self.why_not_live(line, now) is None
                     and any(a.fingerprint == fingerprint for a in s.alerts)), None)


class RemoteLinemon:
    def __init__(self, config: PlantConfig, clock: Clock = wall_clock,
                 client_id: str | None = None) -> None:
        if config.bus is None:
            raise ValueError("bus: the API role needs the bus section (broker of the engines)")
        self.config = config
        self.clock = clock
        self.bus_config: BusConfig = config.bus
        self.topics = Topics.of(config.bus.topic_prefix, config.site.name)
        # The reply topic carries the MQTT client id: an ACL `pattern` can then let each API
        # process read its own replies only.
        self.client_id = client_id or f"linemon-api-{secrets.token_hex(4)}"
        self.historian = HistoryReader(config.historian, clock=clock)
        self.engine = RemoteEngine(config, config.bus.stale_after_s, clock)
        self.sources: list[Source] = []
        self.notifier = None  # notifications go out from the engines
        self.engines: dict[str, EngineStatus] = {}
        self.started = asyncio.Event()
        self.listeners = Listeners()
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._task: asyncio.Task[None] | None = None
        root = self.topics.root
        self.bus = Bus(self.bus_config, self.client_id, on_message=self._on_message,
                       subscriptions=[f"{root}/lines/+/view", f"{root}/lines/+/events",
                                      f"{root}/engines/+", self.topics.replies(self.client_id)])

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.historian.start()
        self._task = asyncio.create_task(self.bus.run(), name="bus")
        self.started.set()

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout_s)
        await self.bus.close()
        await self.historian.close()

    def health(self) -> dict[str, object]:
        now = self.clock()
        s = self.bus.stats
        return {
            "bus": {"connected": s.connected, "received": s.received, "rejected": s.rejected,
                    "last_error": s.last_error},
            "lines": {line: round((now - at).total_seconds(), 3)
                      for line, at in self.engine.received_at.items()},
            "engines": {e.engine: {"online": e.online, "lines": e.lines}
                        for e in self.engines.values()},
            "historian": self.historian.health(),
        }

    # --- the bus -----------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        root = self.topics.root
        try:
            if topic.startswith(f"{root}/engines/"):
                status = EngineStatus.model_validate_json(payload)
                self.engines[status.engine] = status
                if status.online:
                    self.engine.offline.discard(status.engine)
                else:
                    self.engine.offline.add(status.engine)
            elif topic == self.topics.replies(self.client_id):
                reply = Reply.model_validate_json(payload)
                future = self._pending.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
            elif topic.endswith("/view"):
                line = self.topics.line_of(topic)
                if line is not None and payload:
                    state = LineState.model_validate_json(payload)
                    self.engine.store(line, state, retained=retained)
            elif topic.endswith("/events"):
                self.listeners.send(EventBatch.model_validate_json(payload).decoded())
        except ValidationError as err:
            self.bus.reject(topic, f"not a v1 message: {err.error_count()} problem(s), first: "
                            f"{err.errors()[0]['msg']}")

    def listen(self, maxsize: int = 10_000) -> asyncio.Queue[Event]:
        return self.listeners.listen(maxsize)

    def unlisten(self, queue: asyncio.Queue[Event]) -> None:
        self.listeners.unlisten(queue)

    async def _ask(self, line: str, command: Command, timeout_s: float) -> Reply:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[command.id] = future
        try:
            if not self.bus.publish(self.topics.commands(line),
                                    command.model_dump_json().encode()):
                raise EngineUnavailable("the API is not connected to the bus; try again")
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise EngineUnavailable(f"the engine for line {line!r} did not answer within "
                                    f"{timeout_s:.0f} s") from None
        finally:
            self._pending.pop(command.id, None)

    def _command(self, op: str, by: str, **fields: object) -> Command:
        return Command.model_validate({
            "id": secrets.token_hex(8), "reply_to": self.topics.replies(self.client_id),
            "op": op, "by": by, "at": self.clock(), **fields})

    # --- what people do ----------------------------------------------------------------

    async def acknowledge(self, fingerprint: str, by: str) -> Alert:
        alert = next((a for a in self.engine.alerts.active() if a.fingerprint == fingerprint),
                     None)
        line = None if alert is None else (
            alert.labels.get("line") or self.engine.line_holding(fingerprint))
        if line is None:
            raise AlertNotFound(f"no active alert {fingerprint!r}; see GET /api/v1/alerts")
        reply = await self._ask(line, self._command(
            "ack", by, fingerprint=fingerprint), self.bus_config.reply_timeout_s)
        _raise_for(reply)
        assert reply.alert is not None
        return reply.alert

    async def silence(self, matchers: dict[str, str], starts: datetime, ends: datetime,
                      by: str, comment: str) -> Silence:
        silence = Silence(f"silence-api-{secrets.token_hex(6)}", matchers, starts, ends, by,
                          comment)
        replies = await asyncio.gather(*(
            self._ask(line, self._command("silence", by, silence=silence),
                      self.bus_config.reply_timeout_s)
            for line in self._lines_for(matchers)), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            _raise_for(reply)
        return silence

    async def expire_silence(self, silence_id: str) -> Silence | None:
        lines = [line for line, state in self.engine.views.items()
                 if any(s.id == silence_id for s in state.silences)]
        replies = await asyncio.gather(*(
            self._ask(line, self._command("expire_silence", by="api", silence_id=silence_id),
                      self.bus_config.reply_timeout_s) for line in lines),
            return_exceptions=True)
        ended = [r.silence for r in replies if isinstance(r, Reply) and r.error is None]
        failed = [r for r in replies if isinstance(r, BaseException)]
        if failed:  # ended where the engines answered; the caller may try again
            raise failed[0]
        return ended[0] if ended else None

    async def code_downtime(self, downtime_id: str, reason_code: str, reason_text: str | None,
                            note: str | None, by: str) -> DowntimeEvent:
        event = await self.historian.query.get_downtime(downtime_id)
        if event is None:
            raise DowntimeNotFound(f"no downtime event {downtime_id!r}")
        reply = await self._ask(event.line, self._command(
            "code", by, downtime_id=downtime_id, reason_code=reason_code,
            reason_text=reason_text, note=note), self.bus_config.reply_timeout_s + CODING_EXTRA_S)
        _raise_for(reply)
        assert reply.downtime is not None
        return reply.downtime

    def _lines_for(self, matchers: dict[str, str]) -> list[str]:
        line = self.config.silence_line(matchers)
        return [ln.id for ln in self.config.lines] if line is None else [line]


def _raise_for(reply: Reply) -> None:
    detail = reply.detail or str(reply.error)
    match reply.error:
        case None:
            return
        case "no_alert":
            raise AlertNotFound(detail)
        case "no_downtime":
            raise DowntimeNotFound(detail)
        case "conflict":
            raise AlertConflict(detail)
        case "history_unavailable":
            raise HistoryUnavailable(detail)
    raise EngineUnavailable(f"the engine could not do it: {detail}")
