"""The bottleneck scenario: oven-1 (5.0 s a part against 3.0-3.4 s) holds the line back.

Roser's active period method on linemon's own state changes must name it as the main
bottleneck, and agree with the same method applied to the truth's state intervals.
Run with `-s` to see each machine's sole and shifting bottleneck share.
"""

from __future__ import annotations

from datetime import timedelta

from rules.bottleneck import ACTIVE, shares
from rules.shift_report import bottleneck_report
from tests.accuracy.compare import ts
from tests.accuracy.conftest import replayed

TRUTH_ACTIVE = {str(s) for s in ACTIVE} | {"fault", "off"}  # the truth's state names
SECOND = timedelta(seconds=1)


def test_the_slowest_machine_is_the_main_bottleneck() -> None:
    run = replayed("bottleneck")
    engine, end = run.replay.engine, run.replay.end
    view = engine.bottleneck_view("bake-1", end, engine.calendar.shift_at(end - SECOND))
    report = view.shift
    assert report is not None
    print(f"\nbottleneck scenario, shift so far ({report.analysed_s / 3600:.2f} h analysed):")
    for s in report.shares:
        print(f"  {s.machine:9} sole {s.sole_s / report.analysed_s:6.1%}  shifting "
              f"{s.shifting_s / report.analysed_s:6.1%}  total {s.share:6.1%}")
    print(f"  main bottleneck: {report.main} ({report.shares[0].share:.1%} of the time)")
    assert report.main == "oven-1"
    assert report.shares[0].share is not None and report.shares[0].share > 0.5
    # the same method on the truth's intervals gives the same answer
    truth_spans = {
        mid: [(ts(iv["start"]), ts(iv["end"])) for iv in doc["intervals"]
              if iv["state"] in TRUTH_ACTIVE and iv["end"] > iv["start"]]
        for mid, doc in run.truth["machines"].items()}
    truth_spans = {mid: _merged(spans) for mid, spans in truth_spans.items()}
    shift = engine.calendar.shift_at(report.start)
    assert shift is not None
    expected = shares(truth_spans, report.start, report.end,
                      [(b.start, b.end) for b in shift.breaks])
    assert expected.main == report.main
    for mine, theirs in zip(report.shares, expected.shares, strict=True):
        assert mine.machine == theirs.machine
        assert abs(mine.total_s - theirs.total_s) <= 1.0
    # a closed shift's report is built the same way
    again = bottleneck_report(engine.activity["bake-1"], engine.calendar.scoped("bake-1"),
                              shift, end)
    assert again.main == "oven-1"


def _merged(spans):
    out = []
    for a, b in spans:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
