"""A broken plant config is answered with the exact path, the YAML line and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from linemon.config import ConfigError, load_config, parse_config

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "plant.yaml"


def demo_text() -> str:
    return DEMO.read_text()


def test_demo_config_is_valid() -> None:
    config = load_config(DEMO)
    assert len(config.machines()) >= 4
    kinds = {config.source(m.source).kind for _, m in config.machines()}
    assert kinds == {"opcua", "mqtt"}


def replace(old: str, new: str) -> str:
    text = demo_text()
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


CASES = [
    # (name, broken yaml, expected path, words in the message, line marker or None)
    (
        "bad node id",
        replace('s=line-1.press-1.StateCode"}', 's=line-1.press-1.StateCode;x"}').replace(
            "nsu=urn:linemon:simulator;s=line-1.press-1.StateCode;x", "urn:linemon:press-1-state", 1
        ),
        "lines[0].machines[0].tags.state.node",
        "nsu=",
        "urn:linemon:press-1-state",
    ),
    (
        "unknown source",
        replace("source: plc-line1\n        ideal_cycle_time_s: 3.3",
                "source: plc-line9\n        ideal_cycle_time_s: 3.3"),
        "lines[0].machines[1].source",
        "unknown source 'plc-line9'",
        "plc-line9",
    ),
    (
        "negative cycle time",
        replace("ideal_cycle_time_s: 3.2", "ideal_cycle_time_s: -2"),
        "lines[0].machines[2].ideal_cycle_time_s",
        "greater than 0",
        "ideal_cycle_time_s: -2",
    ),
    (
        "typo in a key",
        replace("    publishing_interval_ms: 250", "    publishing_intervall_ms: 250"),
        "sources[0].publishing_intervall_ms",
        "unknown key",
        "publishing_intervall_ms",
    ),
    (
        "unknown source kind",
        replace("  - kind: mqtt", "  - kind: modbus"),
        "sources[1].kind",
        "unknown kind 'modbus'",
        "kind: modbus",
    ),
    (
        "bad timezone",
        replace("timezone: Europe/Berlin", "timezone: Europe/Gotham"),
        "site.timezone",
        "unknown IANA timezone",
        "Europe/Gotham",
    ),
    (
        "bad shift time",
        replace('start: "14:00"', 'start: "25:00"'),
        "calendar.shifts[1].start",
        "time",
        '"25:00"',
    ),
    (
        "topic on an OPC-UA machine",
        replace('fault_code: {node: "nsu=urn:linemon:simulator;s=line-1.weld-1.FaultCode"}',
                "fault_code: {topic: plant/line-1/weld-1/fault}"),
        "lines[0].machines[1].tags.fault_code.topic",
        "'topic' is for MQTT",
        "plant/line-1/weld-1/fault",
    ),
    (
        "node on an MQTT machine",
        replace("good_count: {topic: plant/line-1/pack-1/good_count, type: int}",
                'good_count: {node: "ns=2;s=pack.Good"}'),
        "lines[0].machines[4].tags.good_count.node",
        "'node' is for OPC-UA",
        "pack.Good",
    ),
    (
        "duplicate machine id",
        replace("- id: weld-1", "- id: press-1"),
        "lines[0].machines[1].id",
        "duplicate machine id 'press-1'",
        None,
    ),
    (
        "missing required field",
        replace("        ideal_cycle_time_s: 2.6\n", ""),
        "lines[0].machines[3].ideal_cycle_time_s",
        "required",
        None,
    ),
    (
        "bad port",
        replace("    port: 1883", "    port: 70000"),
        "sources[1].port",
        "less than or equal to 65535",
        "port: 70000",
    ),
    (
        "end machine not on the line",
        replace("end_machine: pack-1", "end_machine: pack-9"),
        "lines[0].end_machine",
        "no machine 'pack-9'",
        "end_machine: pack-9",
    ),
    (
        "wrong type of value",
        replace("qos: 1", "qos: high"),
        "sources[1].qos",
        "",
        "qos: high",
    ),
    (
        "unknown historian backend",
        replace("backend: {kind: sqlite", "backend: {kind: mongodb"),
        "historian.backend.kind",
        "unknown kind 'mongodb'",
        "kind: mongodb",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "path", "words", "marker"), CASES, ids=[c[0] for c in CASES]
)
def test_broken_config_names_the_field(name, text, path, words, marker) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="plant.yaml")
    issues = caught.value.issues
    assert any(i.path == path for i in issues), [str(i) for i in issues]
    issue = next(i for i in issues if i.path == path)
    assert words in issue.message, str(issue)
    if marker is not None:
        assert issue.line == line_of(text, marker), str(issue)
    assert str(caught.value).startswith("plant.yaml: invalid plant config")


def test_not_yaml_gives_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("site:\n  name: [unclosed\n", source="x.yaml")
    assert "not valid YAML" in caught.value.issues[0].message
    assert caught.value.issues[0].line is not None


def test_secret_values_are_not_accepted_inline() -> None:
    data = yaml.safe_load(demo_text())
    data["sources"][0]["password"] = "hunter2"
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(data))
    assert caught.value.issues[0].path == "sources[0].password"
