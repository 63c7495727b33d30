"""Threshold rules with hysteresis and `for`, stale-data rules, and the rules config."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from linemon.model import Quality
from rules.alerting import AlertEngine
from rules.rules_config import RulesConfig, ThresholdRuleConfig, cross_check_rules
from rules.thresholds import ThresholdWatch
from tests.unit.plant import T0, sample


def t(seconds: float):
    return T0 + timedelta(seconds=seconds)


def rule(**extra) -> ThresholdRuleConfig:
    return ThresholdRuleConfig.model_validate(
        {"id": "oven", "machine": "m1", "signal": "temperature", **extra})


@pytest.mark.parametrize(("levels", "values", "tripped"), [
    # above 80, clears at 75: hovering between 75 and 80 keeps it tripped
    ({"above": 80, "clear": 75}, [70, 81, 79, 76, 80, 75, 79, 80.5],
     [False, True, True, True, True, False, False, True]),
    # no clear level: clears as soon as it is back at the level
    ({"above": 80}, [81, 80, 80.1], [True, False, True]),
    # below 2 bar, clears at 2.5
    ({"below": 2.0, "clear": 2.5}, [3, 1.9, 2.4, 2.5, 1.99], [False, True, True, False, True]),
])
def test_hysteresis(levels, values, tripped) -> None:
    watch = ThresholdWatch(rule(**levels), "l1")
    got = []
    for i, value in enumerate(values):
        watch.on_value(t(i), value)
        got.append(watch.tripped_since is not None)
    assert got == tripped


def engine_with(rules: dict, machines: dict[str, str] | None = None) -> AlertEngine:
    return AlertEngine(RulesConfig.model_validate(rules), machines or {"m1": "l1"})


def run(engine: AlertEngine, steps) -> list[tuple[float, str]]:
    """steps: (second, value) samples of m1 temperature, or (second, None) for a bare tick."""
    out = []
    for at, value in steps:
        if value is not None:
            engine.on_sample(sample("m1", "temperature", value, t(at)), t(at))
        out += [(at, str(c.change)) for c in engine.on_tick(t(at))]
    return out


def test_threshold_pending_for_then_firing_and_a_dip_above_clear_does_not_reset() -> None:
    engine = engine_with({"thresholds": [
        {"id": "oven", "machine": "m1", "signal": "temperature", "above": 80, "clear": 75,
         "for_s": 30}]})
    assert run(engine, [(0, 70.0), (10, 85.0), (20, 78.0), (39, None), (40, None),
                        (50, 74.0)]) == [(10, "pending"), (40, "firing"), (50, "resolved")]
    [resolved] = engine.recent()
    assert resolved.message == "m1 temperature 78 is above 80 (clears at 75)"


def test_threshold_that_clears_before_for_never_fires() -> None:
    engine = engine_with({"thresholds": [
        {"id": "oven", "machine": "m1", "signal": "temperature", "above": 80, "for_s": 30}]})
    assert run(engine, [(0, 85.0), (20, 79.0), (60, None)]) == [(0, "pending"), (20, "cleared")]


def test_bad_quality_and_text_values_are_not_readings() -> None:
    engine = engine_with({"thresholds": [
        {"id": "oven", "machine": "m1", "signal": "temperature", "above": 80}]})
    engine.on_sample(sample("m1", "temperature", 500.0, t(0), Quality.BAD), t(0))
    engine.on_sample(sample("m1", "temperature", "overrange", t(0)), t(0))
    assert engine.on_tick(t(1)) == []


@pytest.mark.parametrize(("stale", "samples", "ticks", "expected"), [
    # per machine: any signal keeps it fresh
    ({"machine": "m1", "after_s": 30}, [("m1", "speed", 0)], [29, 30],
     [[], [("stale_data", "m1")]]),
    # never heard from: counts from start-up (the first tick at t=0)
    ({"machine": "m2", "after_s": 30}, [], [29, 30], [[], [("stale_data", "m2")]]),
    # one signal of a machine: other signals do not refresh it
    ({"machine": "m1", "signal": "temperature", "after_s": 10},
     [("m1", "temperature", 0), ("m1", "speed", 8)], [9, 10], [[], [("stale_data", "m1")]]),
    # per source, and every machine when none is named
    ({"source": "gw", "after_s": 20}, [("m1", "speed", 5)], [24, 25], [[], [("stale_data", None)]]),
    ({"after_s": 20}, [("m1", "speed", 5)], [20, 25],
     [[("stale_data", "m2")], [("stale_data", "m1")]]),
])
def test_stale_data(stale, samples, ticks, expected) -> None:
    engine = engine_with({"stale": [stale], "line_stop": {"enabled": False}},
                         {"m1": "l1", "m2": "l1"})
    engine.on_tick(t(0))
    for mid, signal, at in samples:
        engine.on_sample(sample(mid, signal, 1.0, t(at)), t(at))
    got = [[(c.alert.rule_id, c.alert.labels.get("machine")) for c in engine.on_tick(t(at))]
           for at in ticks]
    assert got == expected


def test_stale_alert_resolves_when_data_returns_and_bad_quality_is_not_data() -> None:
    engine = engine_with({"stale": [{"machine": "m1", "after_s": 10}]})
    engine.on_tick(t(0))
    engine.on_sample(sample("m1", "speed", 1.0, t(5), Quality.BAD), t(5))
    [fired] = engine.on_tick(t(10))
    assert fired.alert.message == "no data from m1 for 10 s (nothing received yet)"
    engine.on_sample(sample("m1", "speed", 1.0, t(12)), t(12))
    assert [str(c.change) for c in engine.on_tick(t(12))] == ["resolved"]


# --- the rules config -------------------------------------------------------------------


def test_empty_rules_give_machine_stop_line_stop_and_defect_spike() -> None:
    rules = RulesConfig.model_validate({})
    assert rules.machine_stop.enabled and rules.machine_stop.after_s == 30
    assert rules.line_stop.enabled and rules.line_stop.fraction == 1.0
    assert rules.defect_spike.enabled and rules.max_input_lag_s == 60


@pytest.mark.parametrize(("data", "message"), [
    ({"thresholds": [{"id": "a", "machine": "m1", "signal": "x"}]}, "exactly one of"),
    ({"thresholds": [{"id": "a", "machine": "m1", "signal": "x", "above": 1, "below": 0}]},
     "exactly one of"),
    ({"thresholds": [{"id": "a", "machine": "m1", "signal": "x", "above": 80, "clear": 85}]},
     "at or below"),
    ({"thresholds": [{"id": "a", "machine": "m1", "signal": "x", "above": 1}] * 2},
     "duplicate ids"),
    ({"stale": [{"source": "gw", "machine": "m1", "after_s": 5}]}, "a `source` or a `machine`"),
    ({"defect_spike": {"window_s": 600, "baseline_window_s": 300}}, "longer than window_s"),
    ({"line_stop": {"fraction": 0}}, "greater than 0"),
    ({"machine_stop": {"after": 5}}, "Extra inputs"),
])
def test_rules_config_errors(data, message) -> None:
    with pytest.raises(ValidationError, match=message):
        RulesConfig.model_validate(data)


def test_cross_check_names_unknown_machines_and_sources() -> None:
    rules = RulesConfig.model_validate({
        "thresholds": [{"id": "a", "machine": "press-9", "signal": "x", "above": 1}],
        "stale": [{"source": "nope", "after_s": 5}],
        "defect_spike": {"machines": ["m1", "m7"]},
    })
    assert cross_check_rules(rules, {"m1": "l1"}, {"gw"}) == [
        ("rules.defect_spike.machines[1]", "unknown machine 'm7'"),
        ("rules.thresholds[0].machine", "unknown machine 'press-9'"),
        ("rules.stale[0].source", "unknown source 'nope'"),
    ]
