"""What every MQTT publisher shares: the machines it serves, a mirror of their current values
(for births and snapshots after a reconnect) and the scripted link outages."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from simulators.mqtt.link import MqttLink
from simulators.signals import Change, Value


class MqttSink:
    """Base of the JSON and Sparkplug publishers; subclasses implement `send` and `birth`."""

    def __init__(self, machines: Mapping[str, str], snapshot: Iterable[Change]) -> None:
        self.machines = dict(machines)  # machine id -> line id
        self.mirror: dict[str, dict[str, tuple[Value, int]]] = {m: {} for m in self.machines}
        for change in snapshot:
            if change.machine in self.mirror:
                self.mirror[change.machine][change.signal] = (change.value, change.t_ms)
        self._tasks: set[asyncio.Task[None]] = set()

    def links(self) -> list[MqttLink]:
        raise NotImplementedError

    def send(self, t_ms: int, changes: list[Change]) -> None:
        raise NotImplementedError

    # -- Sink ------------------------------------------------------------------

    def publish(self, t_ms: int, changes: list[Change]) -> None:
        mine = [c for c in changes if c.machine in self.mirror]
        if not mine:
            return
        for c in mine:
            self.mirror[c.machine][c.signal] = (c.value, c.t_ms)
        self.send(t_ms, mine)

    def link(self, t_ms: int, up: bool) -> None:
        for link in self.links():
            if not up:
                link.go_offline()  # nothing more goes out from this instant on
            self._spawn(link.resume() if up else link.drop())

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.gather(*(link.connect() for link in self.links()))

    async def settled(self) -> None:
        """Wait for scripted drops/reconnects in progress."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        await self.settled()
        await asyncio.gather(*(link.close(self.last_words(link)) for link in self.links()))

    def last_words(self, link: MqttLink) -> list[tuple[str, bytes]]:
        """Messages to publish right before a clean disconnect (Sparkplug: NDEATH)."""
        return []

    @property
    def online(self) -> bool:
        return all(link.online for link in self.links())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
