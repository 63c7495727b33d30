"""What the engine knows about one machine from the plant config, as the tracker uses it."""

from __future__ import annotations

from dataclasses import dataclass, field

from linemon.config import StateMapEntry


@dataclass(frozen=True, slots=True)
class MachineSettings:
    line: str
    machine: str
    name: str
    ideal_cycle_time_s: float
    state_map: dict[str, StateMapEntry]
    reason_codes: dict[str, str]
    has_state_tag: bool
    micro_stop_threshold_s: float = 30.0
    stale_after_s: float | None = None
    no_count_stop_factor: float = 5.0
    counter_max: int | None = None
    products: dict[str, float] = field(default_factory=dict)  # product -> ideal cycle time
    startup_window_s: float = 0.0

    def ideal_cycle_time(self, product: str | None) -> float:
        return self.products.get(product or "", self.ideal_cycle_time_s)
