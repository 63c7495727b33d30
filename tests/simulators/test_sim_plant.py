"""The runner and the command line: truth files, clean shutdown, accelerated time."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators import Scenario, SimulatedPlant
from simulators.cli import main
from tests.simulators.sim_helpers import scripted_dict, wait_for

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"


def test_cli_writes_the_ground_truth(tmp_path):
    out = tmp_path / "truth.json"
    code = main(["--scenario", str(SCENARIOS / "calm-shift.yaml"), "--truth", str(out)])
    assert code == 0
    truth = json.loads(out.read_text())
    assert truth["scenario"] == "calm-shift" and truth["complete"] is True
    assert truth["start"] == "2024-03-04T05:00:00.000Z"
    assert truth["end"] == "2024-03-04T13:00:00.000Z"
    lathe = truth["machines"]["lathe-1"]["shifts"][0]
    assert lathe["planned_stop_s"] == 45 * 60  # two breaks
    again = tmp_path / "again.json"
    assert main(["--scenario", str(SCENARIOS / "calm-shift.yaml"), "--truth", str(again)]) == 0
    assert again.read_text() == out.read_text()


def test_cli_reports_a_broken_scenario(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: s\nlines: [{id: l, machines: [{id: m}]}]\n")
    assert main(["--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: lines[0].machines[0].ideal_cycle_time_s: is required" in err


async def test_accelerated_forever_run_stops_cleanly():
    start = datetime(2024, 3, 4, 5, 0, tzinfo=UTC)
    scenario = Scenario.from_dict(scripted_dict(duration=None))
    before = asyncio.all_tasks()
    plant = SimulatedPlant(scenario, speed=3600, start=start, realtime_forever=True)
    await plant.start()
    assert plant.now() >= start
    await wait_for(lambda: plant.now() > start + timedelta(minutes=30), what="30 simulated min")
    truth = plant.truth()
    assert truth["complete"] is False
    assert truth["end"] >= "2024-03-04T05:30:00.000Z"
    assert truth["machines"]["pack-1"]["totals"]["good"] > 100
    await plant.stop()
    assert asyncio.all_tasks() == before


def test_plant_needs_a_duration_or_forever():
    scenario = Scenario.from_dict(scripted_dict(duration=None))
    with pytest.raises(ValueError, match="has no duration"):
        SimulatedPlant(scenario, speed=0)
    with pytest.raises(ValueError, match="needs a speed > 0"):
        SimulatedPlant(scenario, speed=0, realtime_forever=True)
