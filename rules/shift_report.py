"""What a closed shift leaves behind: each machine's and the line's final figures, who lost
what, and which machine held the line back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from linemon.config import LineConfig
from linemon.model import OeeFigures, OeeSnapshot
from rules.bottleneck import ActivityLog, BottleneckReport, shares
from rules.calendar import ShiftCalendar, ShiftInstance
from rules.kpi import LossShare


@dataclass(frozen=True, slots=True)
class ShiftReport:
    line: str
    shift: ShiftInstance
    machines: dict[str, OeeFigures | None]
    line_figures: OeeFigures | None
    losses: list[LossShare]
    bottleneck: BottleneckReport

    def snapshots(self) -> list[OeeSnapshot]:
        """The final figures as historian events, stamped with the shift's end."""
        at, key = self.shift.end, self.shift.key
        out = [OeeSnapshot(at, self.line, mid, f, key, final=True)
               for mid, f in self.machines.items() if f is not None]
        if self.line_figures is not None:
            out.append(OeeSnapshot(at, self.line, None, self.line_figures, key, final=True))
        return out


def line_ideal_cycle_time(line: LineConfig) -> float:
    """The line's ideal cycle time: configured, or its slowest machine's."""
    if line.ideal_cycle_time_s is not None:
        return line.ideal_cycle_time_s
    return max(m.ideal_cycle_time_s for m in line.machines)


def bottleneck_report(logs: dict[str, ActivityLog], calendar: ShiftCalendar,
                      shift: ShiftInstance, until: datetime) -> BottleneckReport:
    """Roser's shares over the shift up to `until`, its planned down time left out."""
    shift = calendar.shift_at(shift.start) or shift  # with the line's maintenance windows
    end = min(until, shift.end)
    end = max(end, shift.start)
    excluded = [(p.start, p.end) for p in (*shift.breaks, *shift.maintenance)]
    spans = {mid: log.spans(end) for mid, log in logs.items()}
    return shares(spans, shift.start, end, excluded)
