"""OEE accounting for one machine over one shift, as ISO 22400-2 defines it.

Time is booked by state, clipped to the shift's planned time (breaks excluded):

- planned production time [PBT] = shift time - breaks - planned stops - offline time
  (offline is unknown: it is neither run time nor the machine's downtime, so it
  leaves the base and is reported on its own)
- run time [APT] = planned time - unplanned downtime - changeover
  (micro-stops and starved/blocked time stay inside run time: performance losses)
- availability = run time / planned time; performance = ideal cycle x total / run time;
  quality = good / total; OEE = A x P x Q. No planned time gives None ("not planned").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from linemon.model import MachineState, OeeFigures
from rules.calendar import ShiftInstance

_STATE_BUCKET = {
    MachineState.RUNNING: "running_s",
    MachineState.IDLE: "idle_s",
    MachineState.DOWN: "down_s",
    MachineState.CHANGEOVER: "changeover_s",
    MachineState.PLANNED_STOP: "planned_stop_s",
    MachineState.OFFLINE: "offline_s",
}


@dataclass(slots=True)
class ShiftAccount:
    shift: ShiftInstance
    ideal_cycle_time_s: float
    running_s: float = 0.0
    idle_s: float = 0.0
    down_s: float = 0.0
    micro_stop_s: float = 0.0
    changeover_s: float = 0.0
    planned_stop_s: float = 0.0
    offline_s: float = 0.0
    good: int = 0
    reject: int = 0
    failures: int = 0
    micro_stops: int = 0
    elapsed_planned_s: float = 0.0
    _open_stop_s: float = field(default=0.0, repr=False)

    def book(self, a: datetime, b: datetime, state: MachineState) -> None:
        seconds = self.shift.planned_between(a, b)
        if seconds <= 0:
            return
        self.elapsed_planned_s += seconds
        bucket = _STATE_BUCKET[state]
        setattr(self, bucket, getattr(self, bucket) + seconds)
        if state is MachineState.DOWN:
            self._open_stop_s += seconds

    def stop_started(self) -> None:
        self._open_stop_s = 0.0

    def stop_ended(self, micro: bool) -> None:
        """A stop's class is known only at its end: a micro-stop moves to performance loss."""
        if micro:
            self.down_s -= self._open_stop_s
            self.micro_stop_s += self._open_stop_s
            self.micro_stops += 1
        else:
            self.failures += 1
        self._open_stop_s = 0.0

    def figures(self) -> OeeFigures:
        planned = self.elapsed_planned_s - self.planned_stop_s - self.offline_s
        run = planned - self.down_s - self.changeover_s
        total = self.good + self.reject
        ict = self.ideal_cycle_time_s
        availability = run / planned if planned > 0 else None
        performance = ict * total / run if run > 0 else None
        quality = self.good / total if total > 0 else None
        oee = None
        if availability is not None and performance is not None and quality is not None:
            oee = availability * performance * quality
        elif availability == 0:
            oee = 0.0
        reduced_speed = max(0.0, run - self.micro_stop_s - self.idle_s - ict * total)
        return OeeFigures(
            planned_time_s=planned,
            run_time_s=run,
            ideal_cycle_time_s=ict,
            total_count=total,
            good_count=self.good,
            availability=availability,
            performance=performance,
            quality=quality,
            oee=oee,
            losses_s={
                "breakdowns": self.down_s,
                "setup_changeover": self.changeover_s,
                "small_stops": self.micro_stop_s,
                "idle": self.idle_s,
                "reduced_speed": reduced_speed,
                "rejects": ict * self.reject,
                "planned_stops": self.planned_stop_s,
                "offline": self.offline_s,
            },
        )
