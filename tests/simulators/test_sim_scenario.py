"""Scenario files: the shipped ones load, and mistakes are reported where they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators import Scenario, ScenarioError, TimelineError, load_scenario
from simulators.timeline import parse_duration, parse_entry
from tests.simulators.sim_helpers import scripted_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
REASONS = {17: "Jam", 23: "Tool break"}


@pytest.mark.parametrize("name", ["demo", "calm-shift", "bad-shift", "bottleneck", "night-shift"])
def test_shipped_scenarios_load(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.duration_s and scenario.lines


def test_demo_is_the_documented_line():
    demo = load_scenario(SCENARIOS / "demo.yaml")
    (line,) = demo.lines
    assert (demo.site, line.id, line.name) == ("demo-plant", "line-1", "Assembly Line 1")
    protocols = {m.id: m.protocol for m in line.machines}
    assert protocols == {
        "press-1": "opcua",
        "weld-1": "opcua",
        "paint-1": "mqtt",
        "inspect-1": "mqtt",
        "pack-1": "mqtt",
    }
    assert demo.calendar is not None and demo.calendar.timezone == "Europe/Berlin"
    assert [s.name for s in demo.calendar.shifts] == ["early", "late", "night"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at 00:10 press-1 down reason=17 for 4m", ("down", 600.0, 240.0, 17, None)),
        ("at 00:10 press-1 down reason=tool-break for 90s", ("down", 600.0, 90.0, 23, None)),
        ("at 00:30 press-1 rejects 12% for 5m", ("rejects", 1800.0, 300.0, None, 12.0)),
        ("at 01:00:30 press-1 plc-restart", ("plc-restart", 3630.0, None, None, None)),
        ("at 01:00 press-1 restart for 10s", ("plc-restart", 3600.0, 10.0, None, None)),
        ("at 01:20 mqtt disconnect for 30s", ("disconnect", 4800.0, 30.0, None, None)),
        ("at 01:20 mqtt publisher disconnect for 1h", ("disconnect", 4800.0, 3600.0, None, None)),
        ("at 00:40 press-1 changeover for 10m code=5", ("changeover", 2400.0, 600.0, 5, None)),
        ("at 00:45 press-1 slow 30% for 1h30m", ("slow", 2700.0, 5400.0, None, 30.0)),
    ],
)
def test_timeline_sentences(text, expected):
    entry = parse_entry(0, text, ["press-1"], REASONS)
    assert (entry.action, entry.at_s, entry.for_s, entry.reason, entry.percent) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("at 00:10 press-9 down reason=17 for 4m", "unknown machine 'press-9' (known: press-1)"),
        ("at 00:10 press-1 down reason=17 for 4x", "expected a duration like 30s, 4m or 1h"),
        ("at 00:10 press-1 down for 4m", "'down' needs 'reason=<code or name>'"),
        ("at 00:10 press-1 down reason=coffee for 4m", "unknown reason 'coffee'"),
        ("at 00:10 press-1 down reason=99 for 4m", "reason 99 is not in the scenario's reasons"),
        ("at 00:10 press-1 explode", "unknown action 'explode'"),
        ("at 0:75 press-1 plc-restart", "minutes and seconds must be below 60"),
        ("press-1 down", "expected 'at <hh:mm[:ss]>"),
        ("at 00:10 press-1 rejects for 5m", "'rejects' needs a percentage"),
        ("at 00:10 mqtt explode", "the only mqtt action is 'disconnect"),
    ],
)
def test_timeline_errors_name_the_entry(text, complaint):
    with pytest.raises(TimelineError) as err:
        parse_entry(3, text, ["press-1"], REASONS)
    assert str(err.value).startswith(f"timeline[3] {text!r}: ")
    assert complaint in str(err.value)


def test_durations():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2.5m") == 150
    assert parse_duration(45) == 45
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("soon")


def test_yaml_errors_name_file_line_and_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: s\n"
        "lines:\n"
        "  - id: line-1\n"
        "    machines:\n"
        "      - id: press-1\n"
        "        ideal_cycle_time_s: 2\n"
        "        mtfb: 2h\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert str(err.value) == f"{bad}:7: lines[0].machines[0].mtfb: unknown key 'mtfb'"


def test_timeline_error_in_a_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: s\n"
        "lines: [{id: l, machines: [{id: m, ideal_cycle_time_s: 2}]}]\n"
        "timeline:\n"
        "  - at 00:10 m plc-restart\n"
        "  - at 00:20 x down reason=1 for 1m\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}:5: timeline[1]: 'at 00:20 x down reason=1 for 1m': ")
    assert "unknown machine 'x'" in message


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"site": None}, "site: is required"),
        ({"lines": []}, "lines: is required"),
        ({"duration": "-"}, "duration: expected a duration"),
        ({"mqtt": {"mode": "xml"}}, "mqtt.mode: expected one of json-per-signal"),
        ({"calendar": {"timezone": "Mars/Olympus", "shifts": []}}, "unknown time zone"),
        ({"start": "2024-03-04T06:00:00"}, "start: start needs a UTC offset"),
    ],
)
def test_dict_errors_name_the_path(change, complaint):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(scripted_dict(**change))
    assert complaint in str(err.value)


def test_machine_errors_name_the_machine():
    data = scripted_dict()
    data["lines"][0]["machines"][2]["mtbf"] = "1h"
    with pytest.raises(ScenarioError, match=r"lines\[0\]\.machines\[2\]\.mtbf: give both"):
        Scenario.from_dict(data)
    data["lines"][0]["machines"][2].update(mttr="5m", fault_reasons=[99])
    with pytest.raises(ScenarioError, match=r"machines\[2\]\.fault_reasons: reason code 99"):
        Scenario.from_dict(data)
    data = scripted_dict()
    data["lines"][0]["machines"][1]["id"] = "press-1"
    with pytest.raises(ScenarioError, match="machine id 'press-1' is used twice"):
        Scenario.from_dict(data)
