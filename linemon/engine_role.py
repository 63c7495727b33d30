"""The engine role's voice on the bus: each of its lines' live view and events out, the API's
commands (acknowledge, silence, reason coding) in.

An engine owns its lines' alerts and is the only writer of their history, so a command is
carried out here, through the same Linemon methods the single-process API calls, and
answered on the asking API's reply topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from collector.historian.query import DowntimeNotFound, HistoryUnavailable
from linemon.app import AlertConflict, AlertNotFound, Linemon
from linemon.bus import Bus
from linemon.config import BusConfig
from linemon.live_bus import Command, EngineStatus, EventBatch, LineState, Reply, Topics
from linemon.model import Event, line_of

log = logging.getLogger("linemon.engine_role")
VIEW_INTERVAL_S = 1.0


class EnginePublisher:
    def __init__(self, linemon: Linemon, config: BusConfig, engine_id: str,
                 *, interval_s: float = VIEW_INTERVAL_S) -> None:
        self.linemon = linemon
        self.engine_id = engine_id
        self.interval_s = interval_s
        self.topics = Topics.of(config.topic_prefix, linemon.config.site.name)
        self.lines = [line.id for line in linemon.config.lines]
        self.bus = Bus(config, f"linemon-engine-{engine_id}",
                       subscriptions=[self.topics.commands(line) for line in self.lines],
                       on_message=self._on_message,
                       will=(self.topics.engine(engine_id), self._status(online=False)),
                       on_connect=self._on_connect)
        self.commands_handled = 0
        self.commands_refused = 0
        # Engine-made silences (maintenance windows) get ids no other engine can make.
        linemon.engine.alerts.book.silence_prefix = f"silence-{engine_id}-"
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Event] | None = None

    async def start(self) -> None:
        self._queue = self.linemon.listen()
        self._tasks = [
            asyncio.create_task(self.bus.run(), name="bus"),
            asyncio.create_task(self._forward(self._queue), name="bus-events"),
            asyncio.create_task(self._heartbeat(), name="bus-views"),
        ]

    async def stop(self) -> None:
        if self.bus.connected.is_set():
            self.bus.publish(self.topics.engine(self.engine_id), self._status(online=False),
                             retain=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.close()
        if self._queue is not None:
            self.linemon.unlisten(self._queue)

    def health(self) -> dict[str, object]:
        s = self.bus.stats
        return {"engine": self.engine_id, "lines": self.lines, "connected": s.connected,
                "published": s.published, "unsent": s.unsent, "rejected": s.rejected,
                "commands": self.commands_handled, "last_error": s.last_error}

    # --- out ---------------------------------------------------------------------------

    def _status(self, *, online: bool) -> bytes:
        return EngineStatus(engine=self.engine_id, lines=self.lines, online=online,
                            at=self.linemon.clock()).model_dump_json().encode()

    def _on_connect(self) -> None:
        self.bus.publish(self.topics.engine(self.engine_id), self._status(online=True),
                         retain=True)
        for line in self.lines:
            self.publish_view(line)

    def publish_view(self, line: str) -> None:
        lm = self.linemon
        now = lm.clock()
        alerts = lm.engine.alerts
        # An alert without a line (a silent source) shows with each of the engine's lines.
        active = [a for a in alerts.active() if a.labels.get("line") in (None, line)]
        recent = [a for a in alerts.recent() if a.labels.get("line") in (None, line)]
        silences = [s for s in alerts.silences(now) if s.matchers.get("line") in (None, line)]
        state = LineState(engine=self.engine_id, view=lm.engine.line_view(line, now),
                          alerts=active + recent, active=len(active), silences=silences)
        self.bus.publish(self.topics.view(line), state.model_dump_json().encode(), retain=True)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for line in self.lines:
                self.publish_view(line)

    async def _forward(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            by_line: dict[str, list[Event]] = defaultdict(list)
            for event in batch:
                line = line_of(event)
                # An event without a line goes out once; the API shows it on every board.
                by_line[line if line in self.lines else self.lines[0]].append(event)
            for line, events in by_line.items():
                self.publish_view(line)  # first the view, so a board reacting has the news
                self.bus.publish(self.topics.events(line),
                                 EventBatch.of(self.engine_id, events).model_dump_json().encode())

    # --- in ----------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        command = Command.model_validate_json(payload)
        line = self.topics.line_of(topic)
        if line not in self.lines or not command.reply_to.startswith(
                f"{self.topics.root}/replies/"):
            self.commands_refused += 1
            self.bus.reject(topic, f"command {command.op} for line {line!r} or reply_to "
                            f"{command.reply_to!r} outside this engine's topics")
            return
        task = asyncio.create_task(self._answer(command, line),
                                   name=f"bus-command:{command.op}")
        self._tasks = [t for t in self._tasks if not t.done()] + [task]

    async def _answer(self, command: Command, line: str) -> None:
        try:
            reply = await self._carry_out(command, line)
        except AlertNotFound as err:
            reply = Reply(id=command.id, error="no_alert", detail=str(err))
        except DowntimeNotFound as err:
            reply = Reply(id=command.id, error="no_downtime", detail=str(err))
        except AlertConflict as err:
            reply = Reply(id=command.id, error="conflict", detail=str(err))
        except HistoryUnavailable as err:
            reply = Reply(id=command.id, error="history_unavailable", detail=str(err))
        except Exception as err:  # answer anyway: the API must not wait for a crash
            log.exception("command %s failed", command.op)
            reply = Reply(id=command.id, error="failed", detail=f"{type(err).__name__}: {err}")
        self.commands_handled += 1
        self.bus.publish(command.reply_to, reply.model_dump_json().encode())
        for line in self.lines:  # the change shows on the boards without waiting a second
            self.publish_view(line)

    async def _carry_out(self, c: Command, line: str) -> Reply:
        """Only on the line the command was sent for: the API checked the key against it."""
        lm = self.linemon
        if c.op == "ack" and c.fingerprint is not None:
            alert = next((a for a in lm.engine.alerts.active()
                          if a.fingerprint == c.fingerprint), None)
            if alert is not None and alert.labels.get("line") not in (None, line):
                raise AlertNotFound(f"no active alert {c.fingerprint!r} on line {line!r}")
            return Reply(id=c.id, alert=await lm.acknowledge(c.fingerprint, c.by))
        if c.op == "silence" and c.silence is not None:
            s = c.silence
            if lm.config.silence_line(s.matchers) not in (None, line):
                return Reply(id=c.id, error="bad_command",
                             detail=f"the silence is not for line {line!r}")
            made = lm.engine.alerts.silence(s.matchers, s.starts_at, s.ends_at, s.created_by,
                                            s.comment, s.id)
            return Reply(id=c.id, silence=made)
        if c.op == "expire_silence" and c.silence_id is not None:
            ended = lm.engine.alerts.expire_silence(c.silence_id, lm.clock())
            if ended is None:
                return Reply(id=c.id, error="no_silence", detail=f"no silence {c.silence_id!r}")
            return Reply(id=c.id, silence=ended)
        if c.op == "code" and c.downtime_id is not None and c.reason_code is not None:
            stop = await lm.historian.query.get_downtime(c.downtime_id)
            if stop is None or stop.line != line:
                raise DowntimeNotFound(f"no downtime event {c.downtime_id!r} on line {line!r}")
            _, after = await lm.historian.query.code_downtime(
                c.downtime_id, c.reason_code, c.reason_text, c.note, by=c.by, at=c.at)
            return Reply(id=c.id, downtime=after)
        return Reply(id=c.id, error="bad_command", detail=f"incomplete {c.op!r} command")
