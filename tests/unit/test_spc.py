"""SPC: run rules on known sequences, frozen limits, p-charts and I-MR charts, and the alert."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from linemon.model import PartsProduced
from rules.alerting import AlertEngine
from rules.rules_config import RulesConfig, SpcChartConfig
from rules.spc import D2, IndividualsChart, RejectFractionChart, violated
from tests.unit.plant import T0, sample


def t(seconds: float):
    return T0 + timedelta(seconds=seconds)


CALM = [0.1, 0.2, 0.3, -0.1, -0.2, -0.3] * 3  # within 1 sigma, no trend, no alternation

WE, NELSON = "western_electric", "nelson"
ALL_WE, ALL_NELSON = (1, 2, 3, 4), (1, 2, 3, 4, 5, 6, 7, 8)


@pytest.mark.parametrize(("rule_set", "z", "expected"), [
    # Western Electric
    (WE, [0, 3.1], [1]),
    (WE, [0, 3.0], []),  # on the limit is not beyond it
    (WE, [0, -3.5], [1]),
    (WE, [2.5, 0, 2.1], [2]),
    (WE, [2.5, 0, -2.1], []),  # beyond 2 sigma, but on opposite sides
    (WE, [2.5, 2.5, 0.5], []),  # the newest point must complete the pattern
    (WE, [1.5, 1.2, 0.2, 1.1, 1.3], [3]),
    (WE, [1.5, 0.2, 0.2, 1.1, 1.3], []),  # only 3 of 5
    (WE, [0.5] * 8, [4]),
    (WE, [0.5] * 7, []),
    # Nelson
    (NELSON, [0.5] * 9, [2]),  # 9 points on one side of the centre line
    (NELSON, [0.5] * 8, []),
    (NELSON, [0.5] * 8 + [0.0], []),  # a point on the centre line breaks the run
    (NELSON, [-0.5, -0.4, -0.3, -0.2, -0.1, 0.0], [3]),  # 6 rising
    (NELSON, [0.5, 0.4, 0.3, 0.2, 0.1], []),  # 5 falling
    (NELSON, [0.1, 0.2, 0.2, 0.3, 0.4, 0.5], []),  # a tie breaks the trend
    (NELSON, [0.5, -0.5] * 7, [4]),  # 14 alternating
    (NELSON, [-0.5] + [0.5, -0.5] * 6, []),  # 13
    (NELSON, [0, 2.5, 0, 2.1], [5]),
    (NELSON, [0, 1.5, 1.2, 0.2, 1.1, 1.3], [6]),
    (NELSON, CALM[:15], [7]),  # 15 within 1 sigma: the limits are too wide (stratification)
    (NELSON, CALM[:14], []),
    (NELSON, [1.5, 1.6, -1.5, -1.6, 1.5, 1.6, -1.5, -1.6], [8]),  # mixture
    (NELSON, [1.5] * 8, [6]),  # all beyond 1 sigma on one side is not a mixture
])
def test_run_rules_on_known_sequences(rule_set, z, expected) -> None:
    rules = ALL_WE if rule_set == WE else ALL_NELSON
    assert violated(z, rule_set, rules) == expected


def test_only_the_selected_rules_are_checked() -> None:
    assert violated([0.5] * 9, NELSON, (1, 5, 6)) == []
    assert violated([0.5] * 9, NELSON, (2,)) == [2]


def imr(**extra) -> IndividualsChart:
    return IndividualsChart(SpcChartConfig(id="temp", machine="m1", kind="imr",
                                           signal="temperature", **extra))


def test_imr_limits_come_from_the_first_k_points_and_then_freeze() -> None:
    chart = imr(baseline_points=5)
    for i, value in enumerate([10, 12, 10, 12, 10]):
        assert chart.add(t(i), value) is None  # baseline points are not judged
    assert chart.center == pytest.approx(10.8) and chart.spread == pytest.approx(2.0)
    sigma = 2.0 / D2
    point = chart.add(t(5), 17.0)
    assert point is not None and point.z == pytest.approx((17 - 10.8) / sigma)
    assert point.violations == ("western electric 1: 1 point beyond 3 sigma",
                                "moving range beyond its upper limit")
    assert chart.add(t(6), 11.0).violations == ()
    for i in range(8):  # a shifted process does not drag the frozen limits with it
        point = chart.add(t(7 + i), 13.0)
    assert chart.center == pytest.approx(10.8)
    assert "western electric 4: 8 points in a row on one side of the centre line" in (
        point.violations)


def test_imr_baseline_period() -> None:
    chart = imr(baseline_start=t(100), baseline_end=t(200))
    assert chart.add(t(50), 99.0) is None  # before the period: ignored
    for i, value in enumerate([20, 21, 20, 21]):
        assert chart.add(t(100 + i * 20), value) is None
    point = chart.add(t(200), 20.5)  # the first point after the period is judged
    assert chart.center == pytest.approx(20.5) and point is not None and point.z == 0


def test_imr_baseline_period_without_data_falls_back_to_the_first_k_points() -> None:
    chart = imr(baseline_start=t(100), baseline_end=t(200), baseline_points=3)
    assert chart.add(t(300), 5.0) is None
    assert chart.add(t(301), 6.0) is None
    assert chart.add(t(302), 5.0) is None
    assert chart.frozen and chart.add(t(303), 5.5) is not None


def test_p_chart_pools_subgroups_and_flags_a_reject_burst() -> None:
    chart = RejectFractionChart(SpcChartConfig(id="rej", machine="m1", kind="p",
                                               subgroup_parts=50, baseline_points=5))
    for i in range(5):
        assert chart.add_parts(t(i * 100), 24, 1) is None  # half a subgroup
        assert chart.add_parts(t(i * 100 + 50), 24, 1) is None  # 2 of 50: baseline
    assert chart.center == pytest.approx(0.04)
    point = chart.add_parts(t(600), 42, 8)
    sigma = (0.04 * 0.96 / 50) ** 0.5
    assert point is not None and point.z == pytest.approx((0.16 - 0.04) / sigma)
    assert point.violations[0].startswith("western electric 1")
    # a batch that overshoots makes a bigger subgroup: sigma follows n
    point = chart.add_parts(t(700), 78, 2)
    assert point is not None and point.z == pytest.approx((2 / 80 - 0.04) / (
        (0.04 * 0.96 / 80) ** 0.5))


def test_nine_points_above_the_centre_line_raise_a_nelson_2_alert() -> None:
    rules = RulesConfig.model_validate({"spc": [{
        "id": "oven-temp", "machine": "m1", "kind": "imr", "signal": "temperature",
        "rule_set": "nelson", "baseline_points": 10, "keep_firing_for_s": 0}]})
    engine = AlertEngine(rules, {"m1": "l1"})
    baseline = [60.0, 61.0, 59.5, 60.5, 59.0, 61.0, 60.0, 59.5, 60.5, 60.0]  # mean 60.1
    values = [*baseline, *[60.3] * 9, 59.0]
    changes = []
    for i, value in enumerate(values):
        engine.on_sample(sample("m1", "temperature", value, t(i)), t(i))
        changes += [(i, c) for c in engine.on_tick(t(i))]
    assert [(i, str(c.change)) for i, c in changes] == [(18, "firing"), (19, "resolved")]
    fired = changes[0][1].alert
    assert fired.rule_id == "spc:oven-temp" and fired.labels["chart"] == "oven-temp"
    assert fired.message == ("m1 temperature out of control: "
                             "nelson 2: 9 points in a row on one side of the centre line")
    assert fired.first_seen == t(18)


def test_p_chart_alert_through_the_engine() -> None:
    rules = RulesConfig.model_validate({"spc": [{
        "id": "rej", "machine": "m1", "kind": "p", "subgroup_parts": 20,
        "baseline_points": 3}], "defect_spike": {"enabled": False}})
    engine = AlertEngine(rules, {"m1": "l1"})
    for i, (good, reject) in enumerate([(19, 1), (18, 2), (19, 1), (10, 10)]):
        engine.on_event(PartsProduced("l1", "m1", t(i), good, reject))
    [fired] = engine.on_tick(t(4))
    assert fired.alert.rule_id == "spc:rej" and fired.alert.value == pytest.approx(0.5)
    assert "m1 reject fraction out of control" in fired.alert.message


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "imr"}, "needs the `signal`"),
    ({"kind": "p", "signal": "temperature"}, "takes no `signal`"),
    ({"kind": "p", "rule_set": "western_electric", "rules": [5]}, "not [5]"),
    ({"kind": "p", "baseline_start": "2026-03-02T06:00:00Z"}, "both baseline_start"),
    ({"kind": "p", "baseline_start": "2026-03-02T06:00:00", "baseline_end":
      "2026-03-02T07:00:00"}, "UTC offset"),
])
def test_chart_config_errors_say_what_to_fix(data, message) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SpcChartConfig.model_validate({"id": "c", "machine": "m1", **data})
