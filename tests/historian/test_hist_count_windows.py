"""Part counts per window as the stores add them up: per series in storage (InfluxDB), a
range of the primary key per window or, for many windows, one GROUP BY (SQLite).

press-1 counts on two lines (it was moved: two series on InfluxDB), nothing for 25 minutes
(empty windows), and the ranges asked for cut windows at both ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from historian_helpers import BASE, NOW

from collector.historian import Historian
from collector.historian.backends import sqlite
from collector.historian.query import align
from collector.historian.schema import from_ns, to_ns
from linemon.model import PartsProduced


def parts() -> list[PartsProduced]:
    out = []
    for k in range(110):  # every 47 s and some µs, except from 35 to 60 minutes
        at = BASE + timedelta(seconds=47 * k, microseconds=k * 331)
        if timedelta(minutes=35) <= at - BASE < timedelta(minutes=60):
            continue
        line = "line-a" if k < 70 else "line c"
        out.append(PartsProduced(line, "press-1", at, k % 9, 1 if k % 4 == 0 else 0))
    out.append(PartsProduced("line-a", "press-1", BASE + timedelta(minutes=61), 0, 2))
    out.append(PartsProduced("line-a", "press-2", BASE + timedelta(minutes=3), 50, 5))
    return out


def expected(start: datetime, end: datetime, every_s: int) -> list[tuple[datetime, int, int]]:
    every = every_s * 1_000_000_000
    s, e = to_ns(start), to_ns(end)
    sums = {b: [0, 0] for b in range(align(s, every), e, every)}
    for p in parts():
        t = to_ns(p.at)
        if p.machine == "press-1" and s <= t < e:
            sums[align(t, every)][0] += p.good
            sums[align(t, every)][1] += p.reject
    return [(from_ns(b), good, reject) for b, (good, reject) in sorted(sums.items())]


CUT = (BASE + timedelta(minutes=7, seconds=13, microseconds=500),
       BASE + timedelta(minutes=107, seconds=3, microseconds=250))
RANGES = [(BASE, NOW), CUT, (BASE + timedelta(minutes=36), BASE + timedelta(minutes=59))]


# 1 s: more windows than COUNT_RANGES_MAX (SQLite groups); the others one range each.
@pytest.mark.parametrize("every_s", [1, 60, 600, 1234, 3600, 86400])
async def test_counts_add_up_every_series_per_window(historian: Historian, every_s: int
                                                     ) -> None:
    await historian.write_events(parts())
    assert await historian.flush(20)
    for start, end in RANGES:
        got = await historian.query.counts("press-1", start, end, every_s)
        assert [(c.start, c.good, c.reject) for c in got] == expected(start, end, every_s), (
            start - BASE, end - BASE)


@pytest.mark.parametrize("backend_kind", ["sqlite"])
async def test_sqlite_ranges_and_group_by_agree(historian: Historian, backend_kind: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await historian.write_events(parts())
    assert await historian.flush(20)
    for every_s in (1, 60, 1234, 3600):
        for start, end in RANGES:
            answers = []
            for most in (0, 10**9):  # always GROUP BY, always ranges
                monkeypatch.setattr(sqlite, "COUNT_RANGES_MAX", most)
                answers.append(await historian.query.counts("press-1", start, end, every_s))
            assert answers[0] == answers[1], (every_s, start - BASE, end - BASE)
