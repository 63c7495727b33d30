"""Counters: a wrap near the maximum is believed only when the machine could have made it."""

from __future__ import annotations

from rules.counters import CumulativeCounter, PartCounter, plausible_parts


def test_a_wrap_is_a_rollover_when_it_fits_the_time() -> None:
    c = CumulativeCounter(rollover_at=9999)
    assert c.update(9990) == 0  # the baseline
    assert c.update(9998, plausible_parts(10, 1.0)) == 8
    assert c.update(3, plausible_parts(5, 1.0)) == 5  # 9999, 0, 1, 2, 3
    assert (c.rollovers, c.resets) == (1, 0)


def test_a_drop_to_zero_near_the_maximum_too_soon_is_a_reset() -> None:
    c = CumulativeCounter(rollover_at=9999)
    c.update(9600)
    assert c.update(0, plausible_parts(10, 1.2)) == 0  # 400 parts in 10 s: impossible
    assert c.update(7, plausible_parts(8, 1.2)) == 7
    assert (c.rollovers, c.resets) == (0, 1)
    assert c.update(2) == 2  # without a time limit a drop far from the maximum is a reset


def test_without_a_time_limit_a_wrap_near_the_maximum_is_believed() -> None:
    c = CumulativeCounter(rollover_at=9999)
    c.update(9600)
    assert c.update(0) == 400


def test_part_counter_totals_never_go_backwards() -> None:
    p = PartCounter()
    assert p.update("total_count", 100) == (0, 0)
    assert p.update("reject_count", 5) == (0, 0)
    assert p.update("total_count", 110) == (10, 0)
    assert p.update("reject_count", 7) == (0, 2)  # good dips by 2: held back, not negative
    assert p.update("total_count", 113) == (1, 0)
