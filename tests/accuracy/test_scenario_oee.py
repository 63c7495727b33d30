"""A, P, Q and OEE (and failures, MTBF, MTTR) of every machine and shift against the
scenario's ground truth.

Run with `-s` to see the table: truth, linemon and the difference in percentage points.
"""

from __future__ import annotations

import pytest

from tests.accuracy.compare import FIGURES, shift_checks
from tests.accuracy.conftest import SHIPPED, replayed

TOLERANCE_PP = 0.1
TOLERANCE_S = 1.0  # MTBF, MTTR


@pytest.mark.parametrize("name", list(SHIPPED))
def test_oee_matches_the_truth_within_a_tenth_of_a_point(name: str) -> None:
    run = replayed(name)
    checks = shift_checks(name, run.replay, run.truth)
    assert checks, "no machine shift to compare"
    print(f"\n{name}: replayed {run.replay.samples} samples in {run.seconds:.1f} s")
    print(f"  {'machine':10} {'shift':6} " + " ".join(f"{f[:4]:>17}" for f in FIGURES)
          + "   failures  MTBF truth/linemon  MTTR truth/linemon")
    failures = []
    for c in checks:
        cells = []
        for f in FIGURES:
            t, m, d = c.truth[f], c.linemon[f], c.delta_pp(f)
            cells.append(f"{_pct(t)}/{_pct(m)} {_pp(d)}")
            if d is not None and abs(d) > TOLERANCE_PP:
                failures.append(f"{c.machine} {c.shift} {f}: truth {t} linemon {m}")
        if c.failures[0] != c.failures[1]:
            failures.append(f"{c.machine} {c.shift} failures: truth {c.failures[0]} "
                            f"linemon {c.failures[1]}")
        for label, (t, m) in (("MTBF", c.mtbf), ("MTTR", c.mttr)):
            if (t is None) != (m is None) or (t is not None and m is not None
                                              and abs(t - m) > TOLERANCE_S):
                failures.append(f"{c.machine} {c.shift} {label}: truth {t} linemon {m}")
        fails = "/".join(str(v) for v in c.failures)
        mtbf, mttr = ("/".join("-" if v is None else f"{v:.0f}" for v in pair)
                      for pair in (c.mtbf, c.mttr))
        print(f"  {c.machine:10} {c.shift:6} " + " ".join(cells)
              + f"   {fails:>8}  {mtbf:>18}  {mttr:>18}")
    assert not failures, failures


def _pct(v: float | None) -> str:
    return "  -  " if v is None else f"{v * 100:5.1f}"


def _pp(d: float | None) -> str:
    return "   - " if d is None else f"{d:+.3f}"[:6].rjust(6)
