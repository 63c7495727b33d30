"""A discrete-event queue on simulated time (integer epoch milliseconds)."""

from __future__ import annotations

import heapq
from collections.abc import Callable

Action = Callable[[int], None]


class EventQueue:
    """Actions ordered by time, then by the order they were scheduled (deterministic ties)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Action]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, t_ms: int, action: Action) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_ms, self._seq, action))

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_at(self, t_ms: int) -> list[Action]:
        """Remove and return every action due exactly at `t_ms`, in order."""
        due = []
        while self._heap and self._heap[0][0] == t_ms:
            due.append(heapq.heappop(self._heap)[2])
        return due
