"""Machine stops and line-wide stops, from the trackers' state changes.

A machine DOWN gives a critical "machine stopped" condition at once (after `after_s`):
supervisors want the push within seconds. When a whole line (or the configured fraction
of it) is down, idle or in changeover at the same time, the line gets ONE grouped
condition; its inhibition (alerting.py) holds back the machines' own alerts, so a line
stop is one push, not one per machine.

A machine that goes offline while down keeps its stop condition: no data is not "running
again", and resolving the alert would tell the supervisor the stop is over.
Offline machines and machines in a planned stop are left out of the line's count: their
state says nothing about whether the line is producing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from linemon.model import MachineState, StateChanged
from rules.alerts import Condition
from rules.rules_config import LineStopConfig, MachineStopConfig

_UNCOUNTED = frozenset({MachineState.OFFLINE, MachineState.PLANNED_STOP})


@dataclass(slots=True)
class _Machine:
    id: str
    line: str
    state: MachineState = MachineState.OFFLINE
    reason: str | None = None
    down_since: datetime | None = None  # kept through OFFLINE: the stop is not known to be over
    down_backfilled: bool = False
    offline_since: datetime | None = None


@dataclass(slots=True)
class _LineStop:
    since: datetime
    backfilled: bool


class StopWatch:
    def __init__(self, line_stop: LineStopConfig, machine_stop: MachineStopConfig,
                 machines: dict[str, str]) -> None:
        self.line_stop = line_stop
        self.machine_stop = machine_stop
        self.machines = {mid: _Machine(mid, line) for mid, line in machines.items()}
        self.lines: dict[str, list[_Machine]] = {}
        for m in self.machines.values():
            self.lines.setdefault(m.line, []).append(m)
        self._stopped: dict[str, _LineStop] = {}

    def on_state(self, event: StateChanged, backfilled: bool) -> None:
        m = self.machines.get(event.machine)
        if m is None:
            return
        m.state = event.state
        if event.state is not MachineState.OFFLINE:  # offline keeps the stop's reason
            m.reason = event.reason_text or event.reason_code
        if event.state is MachineState.DOWN:
            # A stop carried through OFFLINE continues; but one only known from backfill
            # becomes a live stop when live data says the machine is (still) down.
            if m.down_since is None or (m.down_backfilled and not backfilled):
                m.down_since, m.down_backfilled = event.at, backfilled
            m.offline_since = None
        elif event.state is MachineState.OFFLINE:
            m.offline_since = event.at
        else:
            m.down_since = m.offline_since = None
        self._update_line(m.line, event.at, backfilled)

    def is_down(self, machine: str) -> bool:
        m = self.machines.get(machine)
        return m is not None and m.down_since is not None

    def _update_line(self, line: str, at: datetime, backfilled: bool) -> None:
        stopped = self._line_stopped(line)
        if stopped and line not in self._stopped:
            self._stopped[line] = _LineStop(at, backfilled)
        elif not stopped:
            self._stopped.pop(line, None)

    def _line_stopped(self, line: str) -> bool:
        counted = [m for m in self.lines[line] if m.state not in _UNCOUNTED]
        if len(counted) < self.line_stop.min_machines:
            return False
        stopped = sum(1 for m in counted if m.state in self.line_stop.states)
        return stopped / len(counted) >= self.line_stop.fraction

    # --- conditions --------------------------------------------------------------------

    def conditions(self) -> list[Condition]:
        found: list[Condition] = []
        if self.line_stop.enabled:
            found += [self._line_condition(line, stop) for line, stop in self._stopped.items()]
        if self.machine_stop.enabled:
            found += [self._machine_condition(m) for m in self.machines.values()
                      if m.down_since is not None]
        return found

    def _line_condition(self, line: str, stop: _LineStop) -> Condition:
        machines = self.lines[line]
        counted = [m for m in machines if m.state not in _UNCOUNTED]
        by_state: dict[str, list[str]] = {}
        for m in counted:
            if m.state in self.line_stop.states:
                by_state.setdefault(str(m.state), []).append(
                    f"{m.id} ({m.reason})" if m.state is MachineState.DOWN and m.reason
                    else m.id)
        stopped = sum(len(ids) for ids in by_state.values())
        detail = "; ".join(f"{state}: {', '.join(ids)}" for state, ids in by_state.items())
        c = self.line_stop
        return Condition(
            rule_id="line_stopped",
            labels={"line": line},
            severity=c.severity,
            since=stop.since,
            for_s=c.for_s,
            keep_firing_for_s=c.keep_firing_for_s,
            value=stopped / len(counted) if counted else None,
            message=f"line {line} stopped: {stopped} of {len(counted)} machines ({detail})",
            backfilled=stop.backfilled,
        )

    def _machine_condition(self, m: _Machine) -> Condition:
        assert m.down_since is not None
        c = self.machine_stop
        reason = m.reason or "no reason given"
        if m.offline_since is not None:
            message = (f"{m.id} stopped ({reason}); no data since "
                       f"{m.offline_since:%H:%M:%S} UTC")
        else:
            message = f"{m.id} stopped: {reason}"
        return Condition(
            rule_id="machine_stopped",
            labels={"line": m.line, "machine": m.id},
            severity=c.severity,
            since=m.down_since,
            for_s=c.after_s,
            keep_firing_for_s=c.keep_firing_for_s,
            message=message,
            backfilled=m.down_backfilled,
        )
