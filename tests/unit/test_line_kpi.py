"""Line figures: output-based OEE, shift target and forecast, who lost what, snapshots."""

from __future__ import annotations

from datetime import timedelta

import pytest

from linemon.model import OeeFigures, OeeSnapshot
from rules.engine import Engine
from rules.kpi import line_oee, loss_shares
from tests.unit.plant import T0, machine, plant, sample


def s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def two_machines() -> Engine:
    """m1 (2 s) feeds m2 (3 s, the line end). Early shift: target 1000, break 09:00-09:30."""
    engine = Engine(plant(machines=[machine("m1"), machine("m2", ideal_cycle_time_s=3.0)]), T0)
    for mid in ("m1", "m2"):
        engine.on_sample(sample(mid, "state", 1, s(0)))
        engine.on_sample(sample(mid, "good_count", 0, s(0)))
        engine.on_sample(sample(mid, "reject_count", 0, s(0)))
    engine.on_sample(sample("m1", "state", 4, s(600)))  # m1 down 10 min
    engine.on_sample(sample("m1", "state", 1, s(1200)))
    engine.on_sample(sample("m1", "good_count", 3000, s(7199)))
    engine.on_sample(sample("m2", "good_count", 2000, s(7199)))
    engine.on_sample(sample("m2", "reject_count", 40, s(7199)))
    engine.on_tick(s(7200))
    return engine


def test_line_view_at_08_00_by_hand() -> None:
    view = two_machines().line_view("l1", s(7200))
    assert view.shift == "early" and view.target == 1000 and view.actual == 2000
    progress = view.progress
    assert progress is not None
    assert (progress.planned_total_s, progress.elapsed_planned_s) == (27000, 7200)
    assert view.moving_target == pytest.approx(1000 * 7200 / 27000)  # 266.7 parts by now
    assert view.forecast == pytest.approx(2000 + 2000 / 7200 * (27000 - 7200))  # 7500
    oee = view.oee
    assert oee is not None
    # output-based: good parts at the end x the line's ideal cycle time (the slowest
    # machine's, 3 s) / planned time at the end
    assert oee.oee == pytest.approx(2000 * 3.0 / 7200)
    assert oee.availability * oee.performance * oee.quality == pytest.approx(oee.oee)
    assert oee.ideal_cycle_time_s == 3.0 and oee.good_count == 2000


def test_each_machine_s_share_of_the_losses() -> None:
    view = two_machines().line_view("l1", s(7200))
    shares = {x.machine: x for x in view.losses}
    m1, m2 = shares["m1"], shares["m2"]
    assert m1.losses_s["breakdowns"] == 600
    assert m1.losses_s["reduced_speed"] == pytest.approx(6600 - 2.0 * 3000)
    assert m2.losses_s["production_rejects"] == 3.0 * 40
    assert m2.losses_s["reduced_speed"] == pytest.approx(7200 - 3.0 * 2040)
    line_total = m1.total_s + m2.total_s
    assert m1.share == pytest.approx(m1.total_s / line_total)
    assert m1.share + m2.share == pytest.approx(1.0)
    assert [x.machine for x in view.losses] == sorted(shares, key=lambda m: -shares[m].total_s)


def test_line_oee_edge_cases() -> None:
    assert line_oee(None, 0, 3.0) is None
    empty = OeeFigures(0.0, 0.0, 2.0, 0, 0, None, None, None, None)
    figures = line_oee(empty, 0, 3.0)
    assert figures is not None and figures.oee is None and figures.performance is None
    assert loss_shares({"m1": None}) == []
    assert loss_shares({"m1": empty})[0].share is None  # nothing lost, nothing to share


def test_a_configured_line_ideal_cycle_time_wins() -> None:
    config = plant(lines=[{"id": "l1", "ideal_cycle_time_s": 2.5, "machines": [
        machine("m1"), machine("m2", ideal_cycle_time_s=3.0)]}])
    engine = Engine(config, T0)
    engine.on_sample(sample("m2", "state", 1, s(0)))
    engine.on_sample(sample("m2", "good_count", 0, s(0)))
    engine.on_sample(sample("m2", "good_count", 100, s(500)))
    oee = engine.line_view("l1", s(1000)).oee
    assert oee is not None and oee.oee == pytest.approx(100 * 2.5 / 1000)


def test_snapshots_every_minute_and_a_final_one_per_shift() -> None:
    engine = Engine(plant(), T0)
    engine.on_sample(sample("m1", "state", 1, s(0)))
    events = []
    for t in range(0, 8 * 3600 + 61, 1):
        events += engine.on_tick(s(t))
    snaps = [e for e in events if isinstance(e, OeeSnapshot)]
    live = [e for e in snaps if not e.final]
    final = [e for e in snaps if e.final]
    assert len(live) == 2 * (8 * 60 + 1)  # m1 and the line, once a minute
    assert all(e.shift == "2026-03-02/early" for e in live[:-4])  # 14:00 is late
    assert [(e.at, e.machine, e.shift) for e in final] == [
        (s(8 * 3600), "m1", "2026-03-02/early"), (s(8 * 3600), None, "2026-03-02/early")]
    assert final[0].figures.planned_time_s == 27000
    assert engine.reports["l1"][0].bottleneck.main == "m1"


def test_no_snapshots_when_switched_off_but_shifts_still_close() -> None:
    engine = Engine(plant(oee={"snapshot_every_s": 0}), T0)
    events = []
    for t in range(0, 8 * 3600 + 10, 5):
        events += engine.on_tick(s(t))
    snaps = [e for e in events if isinstance(e, OeeSnapshot)]
    assert snaps and all(e.final for e in snaps)
