"""A production line: machines in series joined by buffers.

An upstream stop drains the buffer in front of the next machine until it starves; a downstream
stop fills the buffer behind the previous machine until it is blocked.
"""

from __future__ import annotations

from collections.abc import Callable

from simulators.buffer import Buffer
from simulators.events import EventQueue
from simulators.machine import PartListener, SimulatedMachine
from simulators.specs import LineSpec


class SimulatedLine:
    def __init__(
        self,
        spec: LineSpec,
        seed: int | str,
        queue: EventQueue,
        start_ms: int,
        on_part: PartListener,
        reason_text: Callable[[int], str],
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.machines = [
            SimulatedMachine(m, spec.id, seed, queue, start_ms, on_part, reason_text)
            for m in spec.machines
        ]
        self.buffers: list[Buffer] = []
        for upstream, downstream in zip(self.machines, self.machines[1:], strict=False):
            capacity = upstream.spec.buffer_capacity
            initial = upstream.spec.buffer_initial
            buffer = Buffer(capacity, capacity // 2 if initial is None else initial)
            upstream.downstream = buffer
            downstream.upstream = buffer
            self.buffers.append(buffer)

    def settle(self, now: int) -> None:
        """Let parts move until nothing can move any more at this instant."""
        for _ in range(4 * len(self.machines) + 4):
            moved = False
            for machine in self.machines:
                moved = machine.settle(now) or moved
            if not moved:
                return
        raise RuntimeError(f"line {self.id}: material flow did not settle at {now}")

    def buffer_levels(self) -> list[int]:
        return [b.level for b in self.buffers]
