"""Every scripted and random stop of the shipped scenarios, as linemon recorded it.

Stops come from the state tag: start and end must be within 1 s of the truth (the samples
carry the simulated source timestamps, so they are exact), no stop may be invented, short
faults must be micro-stops, and reason, category and (for planned stops) the calendar's
name must match. A PLC restart is an unplanned stop in both (linemon: "PLC off", no code).
"""

from __future__ import annotations

import pytest

from linemon.model import DowntimeCategory
from tests.accuracy.compare import engine_stops, stop_check
from tests.accuracy.conftest import SHIPPED, replayed


@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_stop_is_found_on_time_with_its_reason(name: str) -> None:
    run = replayed(name)
    stops = engine_stops(run.replay.events)
    check = stop_check(run.truth, stops)
    micro = sum(1 for _, s in check.matched if s.micro_stop)
    unplanned = sum(1 for _, s in check.matched if s.category is DowntimeCategory.UNPLANNED)
    print(f"\n{name}: {len(check.matched)} stops ({unplanned} unplanned, {micro} micro), "
          f"worst start/end delta {check.worst_delta_s:.3f} s, missed {len(check.missed)}, "
          f"phantom {len(check.phantom)}")
    assert not check.missed, check.missed
    assert not check.phantom, check.phantom
    assert not check.problems, check.problems
    assert check.worst_delta_s <= 1.0
