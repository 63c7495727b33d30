"""The simulation model and its ground truth, in memory (speed 0, no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from simulators import Scenario, SimulatedPlant, Simulation, load_scenario
from tests.simulators.sim_helpers import scripted_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
START = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)


def run(scenario: Scenario, sample_process: bool = False, **kw) -> dict:
    end = START + timedelta(seconds=scenario.duration_s or 0)
    sim = Simulation(scenario, start=START, end=end, sample_process=sample_process, **kw)
    sim.advance_to(sim.end_ms or 0)
    return sim.build_truth()


def ts(minutes: float) -> str:
    t = START + timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


async def test_same_seed_gives_identical_truth_through_the_plant_api():
    scenario = Scenario.from_dict({**_raw(SCENARIOS / "demo.yaml"), "duration": "3h"})
    truths = []
    for _ in range(2):
        plant = SimulatedPlant(scenario, speed=0, start=START)
        await plant.start()
        await plant.wait_until_done()
        truths.append(json.dumps(plant.truth(), sort_keys=True))
        await plant.stop()
    assert truths[0] == truths[1]
    # serving or not (process values sampled or not) does not change what happens
    assert json.dumps(run(scenario, sample_process=True), sort_keys=True) == truths[0]
    other = run(scenario, seed=scenario.seed + 1)
    assert json.dumps(other, sort_keys=True) != truths[0]
    truth = json.loads(truths[0])
    assert truth["complete"] is True
    assert truth["machines"]["press-1"]["totals"]["total"] > 1000


def test_scripted_stop_is_exact_and_reason_is_named(scripted):
    truth = run(scripted)
    stops = truth["machines"]["press-1"]["stops"]
    tool_break = [s for s in stops if s["reason_code"] == 23]
    assert tool_break == [
        {
            "start": ts(2),
            "end": ts(5),
            "duration_s": 180.0,
            "state": "fault",
            "category": "unplanned",
            "reason_code": 23,
            "reason_text": "Tool break",
            "micro_stop": False,
            "open": False,
        }
    ]
    jam = [s for s in truth["machines"]["pack-1"]["stops"] if s["reason_code"] == 17]
    assert [(j["start"], j["duration_s"], j["micro_stop"]) for j in jam] == [(ts(4), 20.0, True)]


def test_upstream_stop_starves_downstream_and_downstream_stop_blocks_upstream(scripted):
    truth = run(scripted)
    weld = truth["machines"]["weld-1"]["intervals"]
    starved = [i for i in weld if i["state"] == "starved" and ts(2) <= i["start"] < ts(5)]
    assert starved, "weld-1 should run dry while press-1 is down"
    assert starved[0]["start"] < ts(2.5) and starved[0]["end"] >= ts(5)
    truth = run(
        Scenario.from_dict(scripted_dict(timeline=["at 00:04 pack-1 down reason=17 for 2m"]))
    )
    paint = truth["machines"]["paint-1"]["intervals"]
    blocked = [i for i in paint if i["state"] == "blocked" and ts(4) <= i["start"] < ts(4.5)]
    assert blocked, "paint-1 should fill its output buffer while pack-1 is down"
    assert blocked[0]["end"] >= ts(6)
    # a 2.0 s machine feeding a 2.4 s machine is blocked now and then, even without stops
    press = truth["machines"]["press-1"]["intervals"]
    assert any(i["state"] == "blocked" for i in press)


def test_planned_break_and_oee_figures_add_up(scripted):
    truth = run(scripted)
    (shift,) = truth["machines"]["press-1"]["shifts"]
    assert shift["shift"] == "early"
    assert (shift["start"], shift["end"]) == (ts(0), ts(20))
    assert shift["planned_stop_s"] == 120.0  # break 06:12-06:14 local
    assert shift["planned_time_s"] == 1200.0 - 120.0
    assert shift["unplanned_downtime_s"] == 180.0
    assert shift["run_time_s"] == shift["planned_time_s"] - 180.0
    assert shift["availability"] == pytest.approx(900 / 1080, abs=1e-6)
    assert shift["performance"] == pytest.approx(2.0 * shift["total"] / 900, abs=1e-6)
    assert shift["quality"] == pytest.approx(shift["good"] / shift["total"], abs=1e-6)
    oee = shift["availability"] * shift["performance"] * shift["quality"]
    assert shift["oee"] == pytest.approx(oee, abs=1e-5)
    pack = truth["machines"]["pack-1"]["shifts"][0]
    assert pack["micro_stops"] == 1 and pack["micro_stop_time_s"] == 20.0
    assert pack["unplanned_downtime_s"] == 0.0  # a micro-stop is a performance loss
    weld = truth["machines"]["weld-1"]["shifts"][0]
    assert weld["changeover_time_s"] == 60.0
    assert weld["run_time_s"] == 1080.0 - 60.0
    assert "starved/blocked" not in truth["definitions"]["run_time"]  # stated in words
    assert "starved" in truth["definitions"]["run_time"]


def test_counters_roll_over_and_reset_on_plc_restart():
    data = scripted_dict(timeline=["at 00:08 paint-1 plc-restart"])
    data["lines"][0]["machines"][0]["counter_max"] = 9
    truth = run(Scenario.from_dict(data))
    press = truth["machines"]["press-1"]
    assert press["totals"]["good"] > 20
    assert press["counters"]["good_count"] == press["totals"]["good"] % 10
    paint = truth["machines"]["paint-1"]
    assert paint["plc_restarts"] == [ts(8)]
    off = [i for i in paint["intervals"] if i["state"] == "off"]
    assert [(i["start"], i["end"]) for i in off] == [(ts(8), ts(8 + 8 / 60))]
    # every part counted before the restart is gone from the tags, not from the truth
    assert paint["counters"]["good_count"] < paint["totals"]["good"]
    assert paint["counters"]["good_count"] > 0


def test_defect_spike_raises_rejects_only_while_it_lasts():
    quiet = run(Scenario.from_dict(scripted_dict(timeline=[])))
    spiky = run(Scenario.from_dict(scripted_dict(timeline=["at 00:03 paint-1 rejects 50% for 2m"])))
    before = quiet["machines"]["paint-1"]["totals"]["reject"]
    after = spiky["machines"]["paint-1"]["totals"]["reject"]
    assert after - before >= 20  # ~54 parts in 2 minutes, half of them rejected


def test_night_shift_crosses_midnight():
    scenario = load_scenario(SCENARIOS / "night-shift.yaml")
    plant_start = scenario.start
    assert plant_start is not None
    end = plant_start + timedelta(hours=4)
    sim = Simulation(scenario, start=plant_start, end=end, sample_process=False)
    sim.advance_to(sim.end_ms or 0)
    truth = sim.build_truth()
    shifts = [s for s in truth["shifts"] if s["name"] == "night"]
    assert shifts and shifts[0]["start"] < "2024-03-05" < shifts[0]["end"]
    first = next(iter(truth["machines"].values()))
    night = next(s for s in first["shifts"] if s["shift"] == "night")
    assert night["planned_stop_s"] > 0  # the breaks after midnight are planned stops
    assert night["good"] > 0


def test_every_shipped_scenario_runs_an_hour_in_memory():
    for path in sorted(SCENARIOS.glob("*.yaml")):
        scenario = Scenario.from_dict({**_raw(path), "duration": "1h"})
        truth = run(scenario)
        assert truth["machines"], path
        for machine in truth["machines"].values():
            assert machine["intervals"][0]["start"] == ts(0)
            assert machine["intervals"][-1]["end"] == ts(60)


def _raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_planned_stop_and_slow_down_from_the_timeline():
    plain = run(Scenario.from_dict(scripted_dict(timeline=[])))
    data = scripted_dict(
        timeline=[
            "at 00:01 pack-1 planned-stop for 2m reason=31",
            "at 00:05 pack-1 slow 50% for 10m",
        ]
    )
    truth = run(Scenario.from_dict(data))
    pack = truth["machines"]["pack-1"]
    planned = [s for s in pack["stops"] if s["start"] == ts(1)]
    assert [(p["category"], p["duration_s"], p["reason_text"]) for p in planned] == [
        ("planned", 120.0, "Material shortage")
    ]
    assert pack["shifts"][0]["planned_stop_s"] == 120.0 + 120.0  # plus the calendar break
    assert pack["totals"]["total"] < plain["machines"]["pack-1"]["totals"]["total"] - 30


def test_a_break_is_planned_down_time_whatever_the_machine_does():
    from simulators.oee import Interval, window_figures
    from simulators.signals import StateCode

    s = 1000
    intervals = [
        Interval(StateCode.RUNNING, 0, "", 0, 100 * s),
        Interval(StateCode.FAULT, 17, "Jam", 100 * s, 300 * s),  # runs through the break
        Interval(StateCode.RUNNING, 0, "", 300 * s, 400 * s),
        Interval(StateCode.OFF, 0, "PLC restart", 400 * s, 405 * s),  # a failure, not micro
        Interval(StateCode.RUNNING, 0, "", 405 * s, 600 * s),
    ]
    f = window_figures(intervals, 0, 600 * s, 100, 0, 1.0, 30 * s, [(150 * s, 250 * s)])
    assert f["break_time_s"] == f["planned_stop_s"] == 100.0
    assert f["planned_time_s"] == 500.0
    assert f["unplanned_downtime_s"] == 100.0 + 5.0  # the fault outside the break + off
    assert f["run_time_s"] == 395.0
    assert f["failures"] == 2
    assert f["mttr_s"] == 52.5 and f["mtbf_s"] == 197.5
    assert f["time_by_state_s"]["fault"] == 100.0
