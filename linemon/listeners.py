"""Whoever listens to linemon's events (the API's live hub, the notifier, the bus publisher)
gets a bounded queue of their own."""

from __future__ import annotations

import asyncio
import contextlib

from linemon.model import Event


class Listeners:
    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []

    def listen(self, maxsize: int = 10_000) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._queues.append(queue)
        return queue

    def unlisten(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def send(self, events: list[Event]) -> None:
        for queue in self._queues:
            for event in events:
                if queue.full():
                    queue.get_nowait()  # a slow listener loses its oldest events, not the engine
                queue.put_nowait(event)
