"""The night shift (22:00-06:00 Europe/Berlin, across midnight) on the nights the clocks
change: 7 hours long in spring, 9 in autumn. The simulator's calendar and linemon's are
independent code; both must agree on the planned time and on every figure.

The filling line is slowed down tenfold and the engine ticks every 10 simulated seconds, so
that a whole night replays in a second or two: with a state tag, stops and counts are booked
at the samples' own timestamps, the tick only adds staleness and alerts (not tested here).

A 02:30-03:00 break is added to the night: on both nights it lasts its wall-clock half hour,
read with `fold=0` on both sides. In spring 02:30 does not exist and is 03:30 summer time
(01:30Z, covering the 03:30-03:45 break); in autumn it is the first 02:30 (summer time,
00:30Z-01:00Z), not 02:30 summer time to 03:00 winter time (an hour and a half)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from simulators import Scenario
from tests.accuracy.compare import FIGURES, shift_checks, ts
from tests.accuracy.conftest import SCENARIOS
from tests.accuracy.replay import Replay, plant_config

DST_BREAK = {"start": "02:30", "end": "03:00", "name": "clock break"}


@pytest.mark.parametrize(("start", "hours", "breaks_s", "dst_break"), [
    # spring: 02:00 CET -> 03:00 CEST; 02:30-03:00 is 03:30-04:00 CEST, over 03:30-03:45
    ("2024-03-30T22:00:00+01:00", 7, 20 * 60 + 30 * 60, ("01:30", "02:00")),
    # autumn: 03:00 CEST -> 02:00 CET; 02:30-03:00 is the first 02:30 (CEST) + 30 min
    ("2024-10-26T22:00:00+02:00", 9, 20 * 60 + 15 * 60 + 30 * 60, ("00:30", "01:00")),
], ids=["spring", "autumn"])
def test_night_shift_on_the_clock_change(start: str, hours: int, breaks_s: int,
                                         dst_break: tuple[str, str]) -> None:
    data = yaml.safe_load((SCENARIOS / "night-shift.yaml").read_text())
    night = next(s for s in data["calendar"]["shifts"] if s["name"] == "night")
    night["breaks"].append(DST_BREAK)
    data["start"], data["duration"] = start, f"{hours}h"
    for line in data["lines"]:
        for machine in line["machines"]:
            machine["ideal_cycle_time_s"] *= 10
    data["timeline"] = [e for e in data["timeline"] if "mqtt" not in e]
    scenario = Scenario.from_dict(data)
    assert scenario.start is not None
    replay = Replay(scenario, scenario.start, scenario.start + timedelta(hours=hours),
                    plant_config(scenario), tick_s=10).run()
    truth = replay.truth()
    assert len(truth["shifts"]) == 1
    shift = replay.engine.calendar.shift_at(scenario.start)
    assert shift is not None and shift.name == "night"
    assert (shift.end - shift.start) == timedelta(hours=hours)
    assert shift.planned_s == hours * 3600 - breaks_s
    # both calendars put every break at the same UTC instants
    mine = [(b.start, b.end) for b in shift.breaks]
    theirs = [(ts(b["start"]), ts(b["end"])) for b in truth["shifts"][0]["breaks"]]
    assert sorted(mine) == sorted(theirs)
    clock = next(b for b in shift.breaks if b.reason == DST_BREAK["name"])
    assert (f"{clock.start:%H:%M}", f"{clock.end:%H:%M}") == dst_break
    checks = shift_checks("night", replay, truth)
    for c in checks:
        truth_shift = truth["machines"][c.machine]["shifts"][0]
        assert truth_shift["planned_time_s"] == pytest.approx(hours * 3600 - breaks_s)
        for f in FIGURES:
            delta = c.delta_pp(f)
            assert delta is not None and abs(delta) <= 0.1, (c.machine, f, c.truth, c.linemon)
    for mid in truth["machines"]:
        account = replay.engine.trackers[mid].account_of(shift.key)
        assert account is not None
        assert account.elapsed_s == pytest.approx(hours * 3600)  # every second, once
    print(f"\nnight of {start[:10]}: {hours} h, planned {shift.planned_s / 3600:.2f} h, "
          + ", ".join(f"{c.machine} OEE {c.linemon['oee']:.3f}" for c in checks))
