"""Signal windows as the stores aggregate them: per series in storage (InfluxDB), per window
range of the primary key (SQLite), merged into one value per window.

One machine's signal arrives from two sources and in two qualities (four series on
InfluxDB); the bad samples are left out; the range starts inside a window.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from historian_helpers import BASE, NOW

from collector.historian import Historian
from collector.historian.query import align
from collector.historian.schema import from_ns, to_ns
from linemon.model import Quality, Sample


def samples() -> list[Sample]:
    out = []
    for k in range(90):  # every 4 s for 6 minutes, values out of order in time
        at = BASE + timedelta(seconds=4 * k)
        source = "opcua" if k % 3 else "mqtt"
        quality = Quality.UNCERTAIN if k % 7 == 0 else Quality.GOOD
        out.append(Sample("press-1", "temp", float((k * 37) % 41), at, NOW, quality, source))
    out += [Sample("press-1", "temp", 999.0, BASE + timedelta(seconds=4 * k + 1), NOW,
                   Quality.BAD, "opcua") for k in range(0, 90, 10)]
    return out


def expected(start_ns: int, end_ns: int, every_s: int, agg: str) -> list[tuple[int, float]]:
    every = every_s * 1_000_000_000
    windows: dict[int, list[tuple[int, float]]] = {}
    for s in samples():
        t = to_ns(s.source_ts)
        if s.quality is not Quality.BAD and start_ns <= t < end_ns:
            windows.setdefault(align(t, every), []).append((t, float(s.value)))
    pick = {"mean": lambda v: sum(x for _, x in v) / len(v),
            "min": lambda v: min(x for _, x in v), "max": lambda v: max(x for _, x in v),
            "last": lambda v: max(v)[1]}[agg]  # the latest sample (times are distinct)
    return [(b, pick(v)) for b, v in sorted(windows.items())]


@pytest.mark.parametrize("agg", ["mean", "min", "max", "last"])
async def test_windows_merge_every_series_of_a_signal(historian: Historian, agg: str) -> None:
    await historian.write_samples(samples())
    assert await historian.flush(20)
    start, end = BASE + timedelta(seconds=50), BASE + timedelta(minutes=5, seconds=30)
    for every_s in (60, 120, 3600):
        got = await historian.query.signal_series("press-1", "temp", start, end, every_s, agg)
        want = expected(to_ns(start), to_ns(end), every_s, agg)
        assert [p.ts for p in got] == [from_ns(b) for b, _ in want], every_s
        assert [p.value for p in got] == pytest.approx([v for _, v in want]), every_s
