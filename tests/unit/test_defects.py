"""Defect spikes: rolling reject rate by parts and by time, against baseline and threshold."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linemon.model import MachineState, PartsProduced, StateChanged
from rules.alerting import AlertEngine
from rules.alerts import AlertChange
from rules.defects import DefectSpikeDetector, binomial_tail
from rules.rules_config import DefectSpikeConfig, RulesConfig
from tests.unit.plant import T0

# These tests are about windows and the alert lifecycle, so they switch off the two gates
# that keep real plants quiet (tested on their own below): the 30 s wait before a stop
# pages anyone, and the binomial significance test on reject counts.
_MECH = {"machine_stop": {"after_s": 0}, "defect_spike": {"significance": 1.0}}
MECHANICS = RulesConfig.model_validate(_MECH)


def t(seconds: float):
    return T0 + timedelta(seconds=seconds)


def produce(first: int, last: int, cycle_s: float, reject) -> list[PartsProduced]:
    """One part per cycle; `reject(i)` says whether part i is scrap."""
    return [PartsProduced("l1", "m1", t(i * cycle_s), int(not reject(i)), int(reject(i)))
            for i in range(first, last)]


def normal(i: int) -> bool:
    return i % 100 == 50  # 1 %


def spike(i: int) -> bool:
    return i % 10 in (0, 3, 6)  # 30 %


def test_spike_rises_within_30_s_and_resolves_after_it_ends() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1"})
    changes = []
    # 20 min at 1 % (a part every 2 s), 5 min at 30 %, then 1 % again; a tick every second
    events = produce(0, 600, 2, normal) + produce(600, 750, 2, spike) + produce(750, 1200, 2,
                                                                                 normal)
    pending = list(events)
    for second in range(0, 2400):
        while pending and pending[0].at <= t(second):
            engine.on_event(pending.pop(0))
        changes += [(second, c) for c in engine.on_tick(t(second))]
    assert [(str(c.change), c.alert.rule_id) for _, c in changes] == [
        ("firing", "defect_spike"), ("resolved", "defect_spike")]
    (fired_at, fired), (resolved_at, _) = changes
    assert 1200 <= fired_at <= 1230  # the spike starts at 1200 s
    assert fired.alert.first_seen >= t(1200)
    assert "rejects over the last 30 parts" in fired.alert.message
    # ends at 1500 s; resolves once the windows are clean plus the 60 s keep_firing_for
    assert 1500 < resolved_at <= 1500 + 120 + 60 + 1


@pytest.mark.parametrize(("batches", "spiking", "why"), [
    # (good, reject) batches a second apart, no baseline: only the absolute 15 % applies
    ([(0, 1)] * 9, False, "fewer than 10 parts"),  # 100 % scrap but too few parts to judge
    ([(0, 1)] * 10, True, "100.0% rejects over the last 30 parts (threshold 15.0%)"),
    ([(9, 1)], False, "reject rate normal"),  # one batch of 10 parts: 10 % < 15 %
    ([(8, 2)], True, "20.0% rejects over the last 30 parts (threshold 15.0%)"),
    ([(28, 2), (1, 0)], False, "reject rate normal"),  # 2 of 31 parts
])
def test_absolute_threshold_and_minimum_sample(batches, spiking, why) -> None:
    detector = DefectSpikeDetector(DefectSpikeConfig(significance=1.0))
    for i, (good, reject) in enumerate(batches):
        detector.add(t(i), good, reject)
    verdict = detector.evaluate(t(len(batches)))
    assert (verdict.spiking, verdict.why) == (spiking, why)


def baseline_then(window_rejects: int) -> DefectSpikeDetector:
    """1000 parts at 1 % then 100 parts with `window_rejects` scrap, a part a second."""
    config = DefectSpikeConfig(significance=1.0, window_parts=100, window_s=100, absolute_rate=None)
    detector = DefectSpikeDetector(config)
    for i in range(1000):
        detector.add(t(i), int(i % 100 != 0), int(i % 100 == 0))
    for i in range(100):
        bad = i < window_rejects
        detector.add(t(1000 + i), int(not bad), int(bad))
    return detector


@pytest.mark.parametrize(("rejects", "spiking"), [
    (2, False),  # 2 % vs a 1 % baseline
    (4, False),  # 4 x baseline, but below min_rate 5 %: not worth a push
    (5, True),  # >= max(5 %, 3 x 1 %)
])
def test_baseline_rule_needs_factor_and_min_rate(rejects, spiking) -> None:
    verdict = baseline_then(rejects).evaluate(t(1099.5))
    assert verdict.baseline_rate == pytest.approx(0.01)
    assert verdict.spiking is spiking


def test_baseline_needs_enough_parts() -> None:
    config = DefectSpikeConfig(significance=1.0, absolute_rate=None, baseline_min_parts=100)
    detector = DefectSpikeDetector(config)
    for i in range(50):  # 50 clean parts: too few to trust as a baseline
        detector.add(t(i * 10), 1, 0)
    for i in range(20):
        detector.add(t(500 + i), 0 if i % 2 else 1, 1 if i % 2 else 0)
    verdict = detector.evaluate(t(520))
    assert verdict.baseline_rate is None and not verdict.spiking


def test_slow_machine_is_judged_on_its_last_parts_not_only_its_last_seconds() -> None:
    config = DefectSpikeConfig(significance=1.0, window_parts=10, window_s=120)
    detector = DefectSpikeDetector(config)
    for i in range(10):  # a part every 60 s: the 120 s window never holds 10 parts
        detector.add(t(i * 60), 0 if i >= 7 else 1, 1 if i >= 7 else 0)
    verdict = detector.evaluate(t(541))
    assert verdict.spiking and verdict.window is not None
    assert verdict.window.name == "last 10 parts" and verdict.window.rate == pytest.approx(0.3)
    assert detector.since == t(9 * 60)  # the 10th part (min_parts) tipped it, not the tick


def test_spike_on_a_down_machine_is_inhibited_and_late_parts_are_ignored() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1"})
    for e in produce(0, 20, 1, lambda i: i % 2 == 0):
        engine.on_event(e)
    [fired] = engine.on_tick(t(20))
    assert fired.change is AlertChange.FIRING and fired.alert.value == pytest.approx(0.5)
    engine.on_event(StateChanged("l1", "m1", t(21), MachineState.DOWN, MachineState.RUNNING))
    changes = {c.alert.rule_id: c.change for c in engine.on_tick(t(22))}
    assert changes == {"machine_stopped": AlertChange.FIRING,
                       "defect_spike": AlertChange.INHIBITED}


# --- the windows against a naive reference ----------------------------------------------


def naive(entries, now, c: DefectSpikeConfig):
    horizon = now - timedelta(seconds=c.baseline_window_s)
    kept = [e for e in entries if e[0] >= horizon]
    parts_start, acc = len(kept), 0
    while parts_start > 0 and acc < c.window_parts:
        parts_start -= 1
        acc += kept[parts_start][1] + kept[parts_start][2]
    cut = now - timedelta(seconds=c.window_s)
    time_start = next((i for i, e in enumerate(kept) if e[0] > cut), len(kept))

    def totals(rows):
        return sum(g + r for _, g, r in rows), sum(r for _, _, r in rows)

    windows = [totals(kept[parts_start:]), totals(kept[time_start:])]
    base_parts, base_rejects = totals(kept[:min(parts_start, time_start)])
    base = base_rejects / base_parts if base_parts >= c.baseline_min_parts else None
    for parts, rejects in windows:
        if parts < c.min_parts:
            continue
        rate = rejects / parts
        if c.absolute_rate is not None and rate >= c.absolute_rate:
            return True, base
        if base is not None and rate >= max(c.min_rate, c.factor * base):
            return True, base
    return False, base


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20), st.integers(0, 6), st.integers(0, 2)),
                min_size=1, max_size=500))
def test_windows_match_a_naive_scan(batches) -> None:
    config = DefectSpikeConfig(significance=1.0, window_parts=12, window_s=40,
                               baseline_window_s=300,
                               baseline_min_parts=20, min_parts=5, absolute_rate=0.4)
    detector = DefectSpikeDetector(config)
    entries, now = [], 0.0
    for gap, good, reject in batches:
        now += gap
        detector.add(t(now), good, reject)
        if good + reject:
            entries.append((t(now), good, reject))
    end = t(now + 7)
    verdict = detector.evaluate(end)
    spiking, base = naive(entries, end, config)
    assert verdict.spiking is spiking
    assert verdict.baseline_rate == (pytest.approx(base) if base is not None else None)


# --- the gates that keep a real plant quiet ------------------------------------------------


def test_two_rejects_in_thirty_parts_at_a_one_percent_baseline_are_chance_not_a_spike() -> None:
    detector = DefectSpikeDetector(DefectSpikeConfig())  # the defaults a plant gets
    at = T0
    for i in range(300):  # an hour of baseline at 1 % rejects
        at += timedelta(seconds=10)
        detector.add(at, 1 if i % 100 else 0, 0 if i % 100 else 1)
    for i in range(30):
        at += timedelta(seconds=3)
        detector.add(at, 0 if i in (5, 20) else 1, 1 if i in (5, 20) else 0)
    verdict = detector.evaluate(at)
    assert not verdict.spiking, verdict.why  # 6.7 %: over 3x the baseline, yet chance


def test_a_sustained_twelve_percent_burst_is_a_spike() -> None:
    detector = DefectSpikeDetector(DefectSpikeConfig())
    at = T0
    for i in range(300):
        at += timedelta(seconds=10)
        detector.add(at, 1 if i % 100 else 0, 0 if i % 100 else 1)
    fired_after = None
    for i in range(200):  # 12 % rejects, one part every 3 s
        at += timedelta(seconds=3)
        reject = i % 8 == 3
        detector.add(at, 0 if reject else 1, 1 if reject else 0)
        if detector.last is not None and detector.last.spiking:
            fired_after = i + 1
            break
    assert fired_after is not None and fired_after <= 60, fired_after


def test_binomial_tail_matches_hand_computed_values() -> None:
    assert binomial_tail(0, 10, 0.1) == 1.0
    assert binomial_tail(11, 10, 0.1) == 0.0
    # P(X >= 1 | 10, 0.1) = 1 - 0.9^10
    assert abs(binomial_tail(1, 10, 0.1) - (1 - 0.9**10)) < 1e-12
    # P(X >= 2 | 30, 0.01) = 1 - 0.99^30 - 30 * 0.01 * 0.99^29
    expected = 1 - 0.99**30 - 30 * 0.01 * 0.99**29
    assert abs(binomial_tail(2, 30, 0.01) - expected) < 1e-12


def test_an_hours_baseline_keeps_each_batch_in_a_few_dozen_bytes() -> None:
    """A part every 2 s keeps 1,800 batches per machine for the hour's baseline: at ~110
    bytes each (a datetime and two ints in lists) 50 machines grew by ~10 MiB in a soak's
    first hour. The batches are kept as machine integers instead."""
    detector = DefectSpikeDetector(DefectSpikeConfig())
    detector.add(t(0), 1, 0)
    tracing = tracemalloc.is_tracing()  # under `python -X tracemalloc`: leave it on
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1, 1801):
            detector.add(t(2 * i), 1, i % 100 == 0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(detector._at) == 1801  # all inside the hour: nothing pruned yet
    assert grown / 1800 < 40, f"{grown / 1800:.0f} bytes per batch"


def test_a_count_beyond_int64_is_left_out_and_the_windows_stay_in_step() -> None:
    """A UInt64 counter read as 0xFFFF_FFFF_FFFF_FFFF is a broken reading, not parts."""
    detector = DefectSpikeDetector(DefectSpikeConfig(absolute_rate=0.2, min_parts=10,
                                                     significance=1.0))
    detector.add(t(0), 10, 0)
    detector.add(t(1), 2**64 - 1, 0)
    for i in range(2, 12):
        detector.add(t(i), 0, 1)
    assert len(detector._at) + 1 == len(detector._parts) == len(detector._rejects)
    verdict = detector.evaluate(t(12))
    assert verdict.spiking and verdict.window.parts == 20 and verdict.window.rejects == 10
