"""The query contract: both backends (a real SQLite file, a real influxd) give the same answers.

Every test runs twice, `[sqlite]` and `[influxdb]`, against the same expected values.
"""

from __future__ import annotations

import base64
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from historian_helpers import BASE, MACHINE_LINES, NOW, sqlite_config

from collector.historian import DowntimeNotFound, Historian, OeeSnapshot, Page
from collector.historian.schema import to_ns
from linemon.model import (
    DowntimeCategory,
    DowntimeEnded,
    DowntimeEvent,
    DowntimeStarted,
    MachineState,
    OeeFigures,
    PartsProduced,
    Quality,
    Sample,
    StateChanged,
)

WEIRD = "weld 1,=\\x"  # a machine id with every character line protocol must escape
WEIRD_SIGNAL = 'speed, m/s="fast"'


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def downtimes() -> list[DowntimeEvent]:
    return [
        DowntimeEvent("d1", "line-a", "press-1", BASE + m(10), BASE + m(25), "17", "jam"),
        DowntimeEvent("d2", "line-a", "press-1", BASE + m(40), BASE + m(40) + timedelta(
            seconds=20), micro_stop=True),
        DowntimeEvent("d3", "line-a", "press-2", BASE + m(50), BASE + m(80), "C1", "die change",
                      category=DowntimeCategory.CHANGEOVER),
        DowntimeEvent("d4", "line-a", "press-2", BASE + m(100)),  # still open: 20 min at NOW
        DowntimeEvent("d5", "line b", WEIRD, BASE + m(5), BASE + m(6), "17", "jam, again"),
    ]


FIGURES = OeeFigures(planned_time_s=3600.0, run_time_s=3000.0, ideal_cycle_time_s=2.5,
                     total_count=1100, good_count=1080, availability=3000 / 3600,
                     performance=0.9166, quality=1080 / 1100, oee=0.7, losses_s={"jam": 600.0},
                     calendar_time_s=4000.0, teep=0.675, technical_efficiency=0.8333,
                     scrap_ratio=20 / 1100, failures=2, micro_stops=3, mtbf_s=1500.0,
                     mttr_s=300.0)
EMPTY = OeeFigures(0.0, 0.0, 2.5, 0, 0, None, None, None, None)


def samples() -> list[Sample]:
    out = [Sample("press-1", "temp", float(k), BASE + timedelta(seconds=10 * k), NOW)
           for k in range(60)]
    out.append(Sample("press-1", "temp", 1000.0, BASE + timedelta(seconds=5), NOW,
                      Quality.BAD))
    out += [Sample("press-1", "count_int", k, BASE + timedelta(seconds=k), NOW, source="opcua")
            for k in range(3)]
    out.append(Sample("press-1", "running", True, BASE, NOW))
    out.append(Sample("press-1", "recipe", 'R-7 "hot"', BASE, NOW))
    out += [Sample(WEIRD, WEIRD_SIGNAL, 2.0 * k, BASE + m(k), NOW, source="mqtt:a b")
            for k in range(3)]
    return out


def events() -> list[object]:
    out: list[object] = [
        StateChanged("line-a", "press-1", BASE - m(30), MachineState.RUNNING, MachineState.IDLE),
        StateChanged("line-a", "press-1", BASE + m(10), MachineState.DOWN, MachineState.RUNNING,
                     "17", "jam"),
        StateChanged("line-a", "press-1", BASE + m(25), MachineState.RUNNING, MachineState.DOWN),
        StateChanged("line-a", "press-1", BASE + m(70), MachineState.IDLE, MachineState.RUNNING),
    ]
    for d in downtimes():  # started (open, no reason yet), then ended with the full record
        out.append(DowntimeStarted(DowntimeEvent(d.id, d.line, d.machine, d.start,
                                                 category=d.category)))
        if d.end is not None:
            out.append(DowntimeEnded(d))
    out += [PartsProduced("line-a", "press-1", BASE + m(k), 10, 1 if k % 10 == 0 else 0)
            for k in range(30)]
    out += [PartsProduced("line-a", "press-2", BASE + m(1), 4, 0, 2.0),  # a whole number
            PartsProduced("line-a", "press-2", BASE + m(1), 0, 1, 2.0),  # merges with it
            PartsProduced("line-a", "press-2", BASE + m(2), 3, 0, 2.75)]
    out += [OeeSnapshot(BASE + m(30), "line-a", "press-1", FIGURES),
            OeeSnapshot(BASE + m(60), "line-a", "press-1", EMPTY, "2026-03-02/early"),
            OeeSnapshot(BASE + m(60), "line-a", None, FIGURES, "2026-03-02/early", final=True)]
    return out


async def seed(h: Historian) -> None:
    await h.write_samples(samples())
    await h.write_events(events())
    assert await h.flush(20), h.health()
    assert h.health()["quarantined"] == 0


def ids(page: Page[DowntimeEvent]) -> list[str]:
    return [e.id for e in page.items]


async def test_downtime_filters(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    window = {"start": BASE, "end": BASE + m(180)}
    assert ids(await q.downtime_events(**window)) == ["d4", "d3", "d2", "d1", "d5"]
    assert ids(await q.downtime_events(**window, machine="press-1")) == ["d2", "d1"]
    assert ids(await q.downtime_events(**window, line="line b")) == ["d5"]
    assert ids(await q.downtime_events(**window, machine=WEIRD)) == ["d5"]
    assert ids(await q.downtime_events(**window, reason_code="17")) == ["d1", "d5"]
    assert ids(await q.downtime_events(**window, category="changeover")) == ["d3"]
    assert ids(await q.downtime_events(**window, min_duration_s=600)) == ["d4", "d3", "d1"]
    assert ids(await q.downtime_events(**window, uncoded_only=True)) == ["d4", "d2"]
    assert ids(await q.downtime_events(**window, order="start_asc")) == [
        "d5", "d1", "d2", "d3", "d4"]
    assert ids(await q.downtime_events(**window, order="duration_desc")) == [
        "d3", "d4", "d1", "d5", "d2"]
    assert ids(await q.downtime_events(start=BASE + m(30), end=BASE + m(60))) == ["d3", "d2"]
    page = await q.downtime_events(**window, machine=WEIRD)
    assert page.items[0] == downtimes()[4]
    d2 = (await q.downtime_events(**window, machine="press-1")).items[0]
    assert d2 == downtimes()[1] and d2.micro_stop and d2.duration_s() == 20


async def test_all_downtime_is_every_page_in_one_read(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    window = {"start": BASE, "end": BASE + m(180)}
    everything = await q.all_downtime_events(**window)
    assert [e.id for e in everything] == ["d5", "d1", "d2", "d3", "d4"]
    assert everything == (await q.downtime_events(**window, order="start_asc")).items
    assert [e.id for e in await q.all_downtime_events(**window, machine="press-1")] == [
        "d1", "d2"]
    assert [e.id for e in await q.all_downtime_events(**window, line="line b")] == ["d5"]
    assert [e.id for e in await q.all_downtime_events(**window, category="changeover")] == [
        "d3"]


async def test_downtime_pagination(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    for order, expected in (("start_desc", ["d4", "d3", "d2", "d1", "d5"]),
                            ("duration_desc", ["d3", "d4", "d1", "d5", "d2"])):
        got, cursor, pages = [], None, 0
        while True:
            page = await q.downtime_events(start=BASE, end=BASE + m(180), limit=2,
                                           cursor=cursor, order=order)
            got += ids(page)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert (got, pages) == (expected, 3)
    with pytest.raises(ValueError, match="cursor"):
        await q.downtime_events(start=BASE, end=BASE + m(180), cursor="garbage")


async def test_code_a_stop_with_audit_trail(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    before, after = await q.code_downtime("d2", "31", "sensor dirty", "cleaned it",
                                          by="ana", at=NOW)
    assert before == downtimes()[1]
    assert (after.reason_code, after.reason_text, after.note, after.coded_by) == (
        "31", "sensor dirty", "cleaned it", "ana")
    assert await q.get_downtime("d2") == after
    _, again = await q.code_downtime("d2", "32", by="ben", at=NOW + m(1))
    assert (again.reason_code, again.reason_text, again.note) == ("32", "sensor dirty",
                                                                  "cleaned it")
    assert await q.get_downtime("d2") == again
    audit = await q.downtime_audit("d2")
    assert [(a.by, a.at, a.before, a.after) for a in audit] == [
        ("ana", NOW, before, after), ("ben", NOW + m(1), after, again)]
    uncoded = await q.downtime_events(start=BASE, end=BASE + m(180), uncoded_only=True)
    assert ids(uncoded) == ["d4"]
    assert await q.get_downtime("nope") is None
    with pytest.raises(DowntimeNotFound):
        await q.code_downtime("nope", "1", by="ana", at=NOW)


async def test_late_engine_event_keeps_a_persons_coding(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    await q.code_downtime("d4", "55", "no material", by="ana", at=NOW)
    end = BASE + m(115)
    d4 = DowntimeEvent("d4", "line-a", "press-2", BASE + m(100), end, "99", "engine guess")
    await historian.write_events([DowntimeEnded(d4)])
    assert await historian.flush(10)
    got = await q.get_downtime("d4")
    assert got is not None
    assert (got.end, got.reason_code, got.reason_text, got.coded_by) == (
        end, "55", "no material", "ana")
    page = await q.downtime_events(start=BASE, end=BASE + m(180), machine="press-2")
    assert len(page.items) == 2  # the end rewrote the same point: no duplicate


async def test_replay_is_idempotent(historian: Historian) -> None:
    await seed(historian)
    await seed(historian)  # what a replay after an outage does
    q = historian.query
    assert len((await q.downtime_events(start=BASE, end=BASE + m(180))).items) == 5
    counts = await q.counts("press-1", BASE, BASE + m(30), 1800)
    assert [(c.good, c.reject) for c in counts] == [(300, 3)]
    series = await q.signal_series("press-1", "temp", BASE, BASE + m(10), 600, "mean")
    assert [p.value for p in series] == [29.5]


async def test_state_timeline(historian: Historian) -> None:
    await seed(historian)
    got = await historian.query.state_timeline("press-1", BASE, BASE + m(180))
    assert [(s.state, s.start, s.end, s.reason_code) for s in got] == [
        (MachineState.RUNNING, BASE, BASE + m(10), None),
        (MachineState.DOWN, BASE + m(10), BASE + m(25), "17"),
        (MachineState.RUNNING, BASE + m(25), BASE + m(70), None),
        (MachineState.IDLE, BASE + m(70), NOW, None),  # clipped at now
    ]
    inner = await historian.query.state_timeline("press-1", BASE + m(12), BASE + m(20))
    assert [(s.state, s.start, s.end, s.reason_text) for s in inner] == [
        (MachineState.DOWN, BASE + m(12), BASE + m(20), "jam")]
    assert await historian.query.state_timeline("press-9", BASE, NOW) == []


async def test_counts(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    got = await q.counts("press-1", BASE, BASE + m(40), 600)
    assert [(c.start, c.good, c.reject) for c in got] == [
        (BASE, 100, 1), (BASE + m(10), 100, 1), (BASE + m(20), 100, 1), (BASE + m(30), 0, 0)]
    cut = await q.counts("press-1", BASE + m(5), BASE + m(20), 600)  # unaligned start
    assert [(c.start, c.good, c.reject) for c in cut] == [(BASE, 50, 0), (BASE + m(10), 100, 1)]


@pytest.mark.parametrize(("agg", "expected"), [
    ("mean", [2.5, 8.5, 14.5]), ("min", [0.0, 6.0, 12.0]), ("max", [5.0, 11.0, 17.0]),
    ("last", [5.0, 11.0, 17.0]),
])
async def test_signal_series(historian: Historian, agg: str, expected: list[float]) -> None:
    await seed(historian)
    got = await historian.query.signal_series("press-1", "temp", BASE, BASE + m(3), 60, agg)
    assert [p.ts for p in got] == [BASE, BASE + m(1), BASE + m(2)]
    assert [p.value for p in got] == pytest.approx(expected)  # the bad 1000.0 is left out


async def test_series_of_ints_bools_and_escaped_names(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    ints = await q.signal_series("press-1", "count_int", BASE, BASE + m(1), 60, "max")
    assert [(p.ts, p.value) for p in ints] == [(BASE, 2.0)]
    bools = await q.signal_series("press-1", "running", BASE, BASE + m(1), 60, "last")
    assert [p.value for p in bools] == [1.0]
    assert await q.signal_series("press-1", "recipe", BASE, BASE + m(1), 60) == []
    weird = await q.signal_series(WEIRD, WEIRD_SIGNAL, BASE, BASE + m(3), 60, "last")
    assert [(p.ts, p.value) for p in weird] == [(BASE, 0.0), (BASE + m(1), 2.0),
                                                (BASE + m(2), 4.0)]


async def test_oee_snapshots(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    machine = await q.oee_snapshots(machine="press-1", start=BASE, end=BASE + m(120))
    assert machine == [OeeSnapshot(BASE + m(30), "line-a", "press-1", FIGURES),
                       OeeSnapshot(BASE + m(60), "line-a", "press-1", EMPTY, "2026-03-02/early")]
    line = await q.oee_snapshots(line="line-a", start=BASE, end=BASE + m(120))
    assert line == [OeeSnapshot(BASE + m(60), "line-a", None, FIGURES, "2026-03-02/early",
                                final=True)]
    assert line[0].figures.failures == 2 and line[0].figures.mtbf_s == 1500.0


async def test_parts_keep_the_ideal_cycle_time_in_force(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    parts = await q.parts_produced("press-2", BASE, BASE + m(120))
    assert parts == [PartsProduced("line-a", "press-2", BASE + m(1), 4, 1, 2.0),
                     PartsProduced("line-a", "press-2", BASE + m(2), 3, 0, 2.75)]
    assert isinstance(parts[0].ideal_cycle_time_s, float)
    old = await q.parts_produced("press-1", BASE, BASE + m(2))  # recorded without one
    assert old == [PartsProduced("line-a", "press-1", BASE, 10, 1),
                   PartsProduced("line-a", "press-1", BASE + m(1), 10, 0)]
    buckets = await q.counts("press-2", BASE, BASE + m(3), 60)
    assert [(b.good, b.reject) for b in buckets] == [(0, 0), (4, 1), (3, 0)]


async def test_bad_queries_are_refused(historian: Historian) -> None:
    q = historian.query
    with pytest.raises(ValueError):
        await q.downtime_events(start=BASE, end=BASE)
    with pytest.raises(ValueError):
        await q.downtime_events(start=BASE, end=NOW, order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await q.signal_series("press-1", "temp", BASE, NOW, 60, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await q.counts("press-1", BASE, NOW, 0)
    with pytest.raises(ValueError):
        await q.oee_snapshots(start=BASE, end=NOW)


async def test_hostile_input_is_just_a_value(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    hostile = 'press-1" or r._measurement != "x'
    assert (await q.downtime_events(start=BASE, end=NOW, machine=hostile)).items == []
    assert await q.get_downtime("d1' OR '1'='1") is None
    assert await q.signal_series(hostile, "temp') --", BASE, NOW, 60) == []
    assert await q.state_timeline(hostile, BASE, NOW) == []


async def test_unstorable_samples_are_counted_not_fatal(historian: Historian) -> None:
    bad = [Sample("press-1", "temp", float("nan"), BASE, NOW),
           Sample("press-1", "two\nlines", 1.0, BASE, NOW),
           Sample("press-1", "ends\\", 1.0, BASE, NOW),
           Sample("press-1", "recipe", "", BASE, NOW)]  # influxd misplaces empty strings
    good = Sample("press-1", "temp", 3.0, BASE, NOW)
    assert await historian.write_samples([*bad, good]) == 1
    assert historian.counters()["rejected"] == {"sample": 4}
    assert await historian.flush(10)
    got = await historian.query.signal_series("press-1", "temp", BASE, BASE + m(1), 60)
    assert [p.value for p in got] == [3.0]


def test_forged_cursors_are_refused() -> None:
    from collector.historian.query import decode_cursor, encode_cursor

    assert decode_cursor(encode_cursor("start_desc", [5, "d1"]), "start_desc") == [5, "d1"]
    assert decode_cursor(encode_cursor("duration_desc", [20, 5, "d1"]), "duration_desc")
    for order, key in (("start_desc", ["x", "d1"]), ("start_desc", [5]),
                       ("duration_desc", [1.5, 5, 7]), ("start_asc", [True, "d"])):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(encode_cursor(order, key), order)
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(encode_cursor("start_asc", [5, "d1"]), "start_desc")
    for raw in (b"[1, 2]", b'"k"', b"7", b"null", b'{"o": "start_desc"}',
                b'{"o": "start_desc", "k": {"a": 1}}', b'{"o": ["start_desc"], "k": [5, "d"]}',
                b'{"o": "start_desc", "k": [5, "d", 1]}', b'{"o": "start_desc", "k": [5.5, "d"]}',
                b'{"o": "start_desc", "k": [5, null]}', b"[" * 100_000, b"\xff\xfe",
                b'{"o": "duration_desc", "k": [NaN, 5, "d"]}'):
        forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        order = "duration_desc" if b"duration" in raw else "start_desc"
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(forged, order)
    for text in ("", "!!!", "e30", "a"):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(text, "start_desc")


async def test_a_history_file_from_before_the_new_fields_is_upgraded(tmp_path: Path) -> None:
    """A SQLite file written before the OEE and parts fields existed gains their columns on
    start; its old rows read back with the new fields absent, new rows carry them."""
    config = sqlite_config(tmp_path)
    with sqlite3.connect(config.backend.path) as conn:
        conn.execute("CREATE TABLE oee(line TEXT NOT NULL DEFAULT '', machine TEXT NOT NULL "
                     "DEFAULT '', ts_ns INTEGER NOT NULL, planned_time_s REAL, run_time_s REAL, "
                     "ideal_cycle_time_s REAL, total_count INTEGER, good_count INTEGER, "
                     "availability REAL, performance REAL, quality REAL, oee REAL, losses TEXT, "
                     "PRIMARY KEY(machine, line, ts_ns)) WITHOUT ROWID")
        conn.execute("CREATE TABLE parts(machine TEXT NOT NULL DEFAULT '', line TEXT NOT NULL "
                     "DEFAULT '', ts_ns INTEGER NOT NULL, good INTEGER, reject INTEGER, "
                     "PRIMARY KEY(machine, ts_ns, line)) WITHOUT ROWID")
        conn.execute("INSERT INTO oee VALUES('line-a', 'press-1', ?, 3600.0, 3000.0, 2.5, 10, 9,"
                     " 0.8, 0.9, 0.9, 0.648, '{}')", (to_ns(BASE),))
    h = Historian(config, machine_lines=MACHINE_LINES, clock=lambda: NOW)
    await h.start()
    try:
        await h.write_events([
            OeeSnapshot(BASE + m(1), "line-a", "press-1", FIGURES, "s1", final=True),
            PartsProduced("line-a", "press-1", BASE, 5, 0, 3.5)])
        assert await h.flush(10), h.health()
        got = await h.query.oee_snapshots(machine="press-1", start=BASE, end=BASE + m(2))
        assert [(s.figures.failures, s.figures.mtbf_s, s.shift, s.final) for s in got] == [
            (0, None, None, False), (2, 1500.0, "s1", True)]
        assert await h.query.parts_produced("press-1", BASE, BASE + m(1)) == [
            PartsProduced("line-a", "press-1", BASE, 5, 0, 3.5)]
    finally:
        await h.close(timeout_s=5)
