"""OEE accounting for one machine over one shift, as ISO 22400-2 defines it.

Time is booked by state, clipped to the shift; planned down time from the calendar
(breaks, maintenance windows) is booked apart, whatever state the machine was in:

- planned production time [PBT] = shift time - planned down time - planned stops - offline
  (offline is unknown: it is neither run time nor the machine's downtime, so it leaves
  the base and is reported on its own)
- run time [APT] = planned time - breakdowns - changeover
  (micro-stops and starved/blocked time stay inside run time: performance losses)
- availability = run time / planned time; performance = ideal time / run time, where the
  ideal time is the ideal cycle time x count summed over the parts (per product);
  quality = good / total; OEE = A x P x Q. No planned time gives None ("not planned").

With `OeePolicy(planned_stops_count=True)` planned down time and planned stops stay in the
base as availability losses (some plants report OEE that way; ISO does not).

Every field of the account is a number that adds up across shifts (a day's account is
the sum of its shifts'), so that closed windows can be merged without recomputing.
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

_DOWN = MachineState.DOWN  # book() runs for every count sample: no enum lookup there


@dataclass(frozen=True, slots=True)
class OeePolicy:
    planned_stops_count: bool = False  # ISO: planned stops are not availability losses


ISO = OeePolicy()


@dataclass(slots=True)
class ShiftAccount:
    shift: ShiftInstance
    ideal_cycle_time_s: float  # the machine's default, in force when the shift was opened
    running_s: float = 0.0
    idle_s: float = 0.0
    down_s: float = 0.0  # breakdowns (unplanned stops that are not micro-stops)
    micro_stop_s: float = 0.0
    changeover_s: float = 0.0
    planned_stop_s: float = 0.0
    offline_s: float = 0.0
    good: int = 0
    reject: int = 0
    startup_reject: int = 0  # of `reject`: made soon after a stop ended
    failures: int = 0
    micro_stops: int = 0
    elapsed_planned_s: float = 0.0  # shift time booked outside planned down time
    elapsed_s: float = 0.0  # shift time booked, planned down time included
    # Parts whose product has another ideal cycle time: sum of (its ICT - the default) x
    # parts, so the default alone values everything when no product is configured.
    extra_ideal_s: float = 0.0
    extra_reject_ideal_s: float = 0.0
    extra_startup_ideal_s: float = 0.0
    _open_stop_s: float = field(default=0.0, repr=False)

    def book(self, a: datetime, b: datetime, state: MachineState) -> float:
        """Book [a, b) in `state`; return the planned seconds it added."""
        in_shift = self.shift.shift_between(a, b)
        if in_shift <= 0:
            return 0.0
        seconds = self.shift.planned_between(a, b)
        self.elapsed_s += in_shift
        if seconds <= 0:
            return 0.0
        self.elapsed_planned_s += seconds
        bucket = _STATE_BUCKET[state]
        setattr(self, bucket, getattr(self, bucket) + seconds)
        if state is _DOWN:
            self._open_stop_s += seconds
        return seconds

    def add_parts(self, good: int, reject: int, ideal_cycle_time_s: float | None = None,
                  startup: bool = False) -> None:
        self.good += good
        self.reject += reject
        if startup:
            self.startup_reject += reject
        if ideal_cycle_time_s is not None and ideal_cycle_time_s != self.ideal_cycle_time_s:
            extra = ideal_cycle_time_s - self.ideal_cycle_time_s
            self.extra_ideal_s += extra * (good + reject)
            self.extra_reject_ideal_s += extra * reject
            if startup:
                self.extra_startup_ideal_s += extra * reject

    def reclassify_micro(self, seconds: float) -> None:
        """Part of a stop booked here turned out to be a micro-stop: a performance loss."""
        self.down_s -= seconds
        self.micro_stop_s += seconds

    # --- one stop inside one shift (the historian's replay books stops this way) ------

    def stop_started(self) -> None:
        self._open_stop_s = 0.0

    def stop_ended(self, micro: bool) -> None:
        """A stop's class is known only at its end: a micro-stop moves to performance loss."""
        if micro:
            self.reclassify_micro(self._open_stop_s)
            self.micro_stops += 1
        else:
            self.failures += 1
        self._open_stop_s = 0.0

    # --- figures -------------------------------------------------------------------------

    def figures(self, policy: OeePolicy = ISO) -> OeeFigures:
        planned_down = self.elapsed_s - self.elapsed_planned_s  # breaks, maintenance
        outside = self.planned_stop_s + planned_down  # planned stops of every kind
        planned = self.elapsed_planned_s - self.planned_stop_s - self.offline_s
        run = planned - self.down_s - self.changeover_s
        if policy.planned_stops_count:
            planned += outside
        total = self.good + self.reject
        ict = self.ideal_cycle_time_s
        ideal = ict * total + self.extra_ideal_s
        availability = run / planned if planned > 0 else None
        performance = ideal / run if run > 0 else None
        quality = self.good / total if total > 0 else None
        oee = None
        if availability is not None and performance is not None and quality is not None:
            oee = availability * performance * quality
        elif availability == 0:
            oee = 0.0
        reject_ideal = ict * self.reject + self.extra_reject_ideal_s
        startup_ideal = ict * self.startup_reject + self.extra_startup_ideal_s
        small_stops = self.micro_stop_s + self.idle_s
        calendar = self.elapsed_s - self.offline_s
        return OeeFigures(
            planned_time_s=planned,
            run_time_s=run,
            ideal_cycle_time_s=ideal / total if total else ict,
            total_count=total,
            good_count=self.good,
            availability=availability,
            performance=performance,
            quality=quality,
            oee=oee,
            losses_s={
                # the six big losses: they add up to planned time - ideal time of good parts
                "breakdowns": self.down_s,
                "setup_changeover": self.changeover_s,
                "small_stops": small_stops,
                "reduced_speed": max(0.0, run - small_stops - ideal),
                "startup_rejects": startup_ideal,
                "production_rejects": reject_ideal - startup_ideal,
                # what the small stops are made of
                "small_stops.micro_stops": self.micro_stop_s,
                "small_stops.idle": self.idle_s,
                # outside the base (ISO), or an availability loss (planned_stops_count)
                "planned_stops": outside,
                "offline": self.offline_s,
            },
            calendar_time_s=calendar if calendar > 0 else None,
            teep=(self.good * (ideal / total) / calendar) if total and calendar > 0 else None,
            technical_efficiency=run / (run + self.down_s) if run + self.down_s > 0 else None,
            scrap_ratio=self.reject / total if total else None,
            failures=self.failures,
            micro_stops=self.micro_stops,
            mtbf_s=run / self.failures if self.failures else None,
            mttr_s=self.down_s / self.failures if self.failures else None,
        )


@dataclass(slots=True)
class StopTime:
    """Where an open unplanned stop's time was booked, and as what so far.

    A stop is a micro-stop while it is shorter than the threshold: its time is a
    performance loss, and moves to breakdowns (counted as a failure in the shift it began
    in) the moment the stop outlasts the threshold. Live figures so never show a short stop
    as downtime only to take it back when it ends, and agree with a closed window's.
    """

    micro: bool
    booked: list[tuple[ShiftAccount, float]] = field(default_factory=list)
    failure_counted: bool = False

    def add(self, account: ShiftAccount, seconds: float) -> None:
        if self.micro:
            account.reclassify_micro(seconds)
        if self.booked and self.booked[-1][0] is account:
            self.booked[-1] = (account, self.booked[-1][1] + seconds)
        else:
            self.booked.append((account, seconds))

    def to_breakdown(self) -> None:
        for account, seconds in self.booked:
            account.reclassify_micro(-seconds)
        self.micro = False
