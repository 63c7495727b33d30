"""The durable spool: group commit, ack-only removal, drop policy, quarantine, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from collector.historian.spool import (
    COMMIT_EVERY_S,
    RECORD_OVERHEAD,
    Record,
    Spool,
    SpoolBatch,
    SpooledRecord,
)

REPO = Path(__file__).resolve().parents[2]


def sample(i: int) -> Record:
    return Record(f"sample,machine=m1,signal=seq value={i}.0 {i}", "sample", False, i)


def event(i: int) -> Record:
    return Record(f'state,machine=m1 state="down",seq={i}i {i}', "event", True, i)


async def open_spool(path: Path, max_bytes: int = 10**9) -> Spool:
    spool = Spool(path, max_bytes=max_bytes)
    await spool.open()
    return spool


async def test_put_is_durable_and_ack_removes_only_what_was_acked(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "s.sqlite")
    ids = await spool.put([sample(i) for i in range(10)])
    assert ids == list(range(1, 11))
    batch = await spool.peek(4)
    assert [r.id for r in batch] == [1, 2, 3, 4]
    assert await spool.ack([1, 2, 3, 4, 99]) == 4  # an unknown id is ignored
    await spool.close()

    spool = await open_spool(tmp_path / "s.sqlite")
    left = await spool.peek(100)
    assert [r.lp for r in left] == [sample(i).lp for i in range(4, 10)]
    assert spool.counters().depth == 6
    assert await spool.put([sample(10)]) == [11]  # ids are never reused
    await spool.close()


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "s.sqlite")
    results = await asyncio.gather(*(spool.put([sample(i)]) for i in range(300)))
    c = spool.counters()
    assert sorted(i for ids in results for i in ids) == list(range(1, 301))
    assert c.appended == 300
    assert c.commits < 300  # group commit: one fsync for many waiting puts
    await spool.close()


async def test_a_stream_of_small_puts_shares_paced_commits(tmp_path: Path) -> None:
    """A pipelined source puts a small batch every few milliseconds without waiting for the
    last: the commits are paced (COMMIT_EVERY_S), not one fsync per put."""
    spool = await open_spool(tmp_path / "s.sqlite")
    puts = []
    began = time.monotonic()
    for i in range(100):
        puts.append(asyncio.ensure_future(spool.put([sample(i)])))
        await asyncio.sleep(0.002)
    results = await asyncio.gather(*puts)
    seconds = time.monotonic() - began
    c = spool.counters()
    assert sorted(i for ids in results for i in ids) == list(range(1, 101))
    print(f"\n100 puts over {seconds:.2f} s: {c.commits} commits")
    assert c.commits <= seconds / COMMIT_EVERY_S + 2  # one per interval, and the first
    await spool.close()


async def test_peek_filters_kind_and_id_range(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "s.sqlite")
    await spool.put([sample(0), event(1), sample(2), event(3)])
    assert [r.id for r in await spool.peek(10, kind="event")] == [2, 4]
    assert [r.id for r in await spool.peek(10, kind="sample", min_id=2)] == [3]
    assert [r.id for r in await spool.peek(10, max_id=2)] == [1, 2]
    assert await spool.remaining(max_id=3) == 3
    assert await spool.remaining(ids=[1, 4, 7]) == 2
    await spool.close()


async def test_over_budget_drops_oldest_samples_and_never_events(tmp_path: Path) -> None:
    size = len(sample(100).lp) + RECORD_OVERHEAD  # all sample lines below have this size
    budget = len(event(1).lp) + RECORD_OVERHEAD + 8 * size  # one event and 8 samples
    spool = await open_spool(tmp_path / "s.sqlite", max_bytes=budget)
    await spool.put([event(1)])
    await spool.put([sample(100 + i) for i in range(8)])
    assert spool.counters().dropped == {}
    await spool.put([sample(200 + i) for i in range(5)])
    c = spool.counters()
    kept = await spool.peek(100)
    assert c.dropped == {"spool_full": 5}
    assert [r.lp for r in kept if r.kind == "event"] == [event(1).lp]
    assert [r.ts_ns for r in kept if r.kind == "sample"] == [105, 106, 107, 200, 201, 202, 203,
                                                               204]
    assert c.bytes <= budget and not c.over_budget

    # Events alone over the budget: all kept, no sample left, the alarm is up.
    await spool.put([event(1000 + i) for i in range(20)])
    c = spool.counters()
    assert len(await spool.peek(1000, kind="event")) == 21
    assert await spool.peek(1000, kind="sample") == []
    assert c.over_budget and c.dropped["spool_full"] == 13
    await spool.close()


async def test_quarantine_is_listed_and_retryable(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "s.sqlite")
    await spool.put([sample(1), sample(2)])
    assert await spool.quarantine([(2, "field type conflict")]) == 1
    listed = await spool.list_quarantine()
    assert [(q.id, q.lp, q.error) for q in listed] == [(2, sample(2).lp, "field type conflict")]
    assert spool.counters().quarantined == 1
    assert [r.id for r in await spool.peek(10)] == [1]
    assert await spool.retry_quarantine() == [3]
    assert [r.lp for r in await spool.peek(10)] == [sample(1).lp, sample(2).lp]
    assert await spool.list_quarantine() == [] and spool.counters().quarantined == 0
    await spool.close()


WRITER = textwrap.dedent("""
    import asyncio, sys
    from collector.historian.spool import Record, Spool

    async def main(path):
        spool = Spool(path, max_bytes=10**9)
        await spool.open()
        seq = 0
        while True:
            batch = [Record(f"sample,machine=m value={seq + i}.0 {seq + i}", "sample", False,
                            seq + i) for i in range(50)]
            await asyncio.gather(spool.put(batch[:25]), spool.put(batch[25:]))
            seq += 50
            print(seq, flush=True)  # everything below seq is durable

    asyncio.run(main(sys.argv[1]))
""")


async def test_kill_9_loses_nothing_that_put_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; reads go to a thread
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    confirmed = 0
    assert proc.stdout is not None
    while confirmed < 3000:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            pytest.fail(f"writer died early with {proc.wait()}")
        confirmed = int(line)
    proc.send_signal(signal.SIGKILL)  # in the middle of the next commits
    proc.wait(10)

    spool = await open_spool(path)
    seqs = [r.ts_ns for r in await spool.peek(10**6)]
    await spool.close()
    assert len(seqs) == len(set(seqs))
    assert set(range(confirmed)) <= set(seqs)


# --- chunked storage: one row per run of records, records still acked one by one --------


def budget_bytes(records: list[Record]) -> int:
    return sum(len(r.lp.encode()) + RECORD_OVERHEAD for r in records)


async def test_partial_ack_of_a_chunk_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = await open_spool(path)
    recs = [sample(i) for i in range(10)]
    assert await spool.put(recs) == list(range(1, 11))  # one put: one chunk
    assert [r.id for r in await spool.peek(4)] == [1, 2, 3, 4]  # the limit cuts the chunk
    assert await spool.ack([1, 2, 3, 4]) == 4
    assert await spool.ack([3, 4]) == 0  # acked twice: counted once
    assert not await spool.any_left(max_id=4)
    assert await spool.any_left(max_id=5)
    assert await spool.remaining(max_id=7) == 3
    assert await spool.ack([6, 9]) == 2  # holes inside what is left
    c = spool.counters()
    assert (c.depth, c.bytes, c.acked) == (4, budget_bytes([recs[i] for i in (4, 6, 7, 9)]), 6)
    await spool.close()

    spool = await open_spool(path)  # only the records never acked come back, once each
    assert [r.id for r in await spool.peek(100)] == [5, 7, 8, 10]
    assert [r.lp for r in await spool.peek(2, min_id=6)] == [recs[6].lp, recs[7].lp]
    assert await spool.oldest_ts("sample") == 4
    c = spool.counters()
    assert (c.depth, c.bytes) == (4, budget_bytes([recs[i] for i in (4, 6, 7, 9)]))
    assert await spool.ack([5, 7, 8, 10]) == 4  # the chunk's last records: it is gone
    assert await spool.peek(100) == [] and spool.counters().bytes == 0
    assert await spool.put([sample(11)]) == [11]
    await spool.close()


async def test_quarantine_of_one_record_inside_a_chunk(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = await open_spool(path)
    lf = Record('state,machine=m1 note="two\nlines" 7', "event", True, 7)  # LF in a string
    recs = [sample(1), sample(2), lf, sample(4)]
    await spool.put([sample(0), *recs])  # chunks: samples 1-3, event 4, sample 5
    await spool.put([sample(5), sample(6)])  # chunk 6-7
    assert await spool.quarantine([(3, "bad"), (4, "bad lf"), (99, "not there")]) == 2
    assert [(q.id, q.lp) for q in await spool.list_quarantine()] == [(3, sample(2).lp),
                                                                      (4, lf.lp)]
    await spool.close()

    spool = await open_spool(path)
    assert [r.id for r in await spool.peek(100)] == [1, 2, 5, 6, 7]
    assert spool.counters().quarantined == 2
    assert spool.counters().bytes == budget_bytes([sample(i) for i in (0, 1, 4, 5, 6)])
    assert await spool.retry_quarantine([4]) == [8]
    got = await spool.peek(100, kind="event")
    assert [(r.id, r.lp, r.priority, r.ts_ns) for r in got] == [(8, lf.lp, True, 7)]
    assert await spool.remaining(ids=[1, 3, 4, 8]) == 2
    await spool.close()


async def test_budget_drops_count_records_across_chunks(tmp_path: Path) -> None:
    size = len(sample(100).lp) + RECORD_OVERHEAD  # every sample below has this size
    budget = 30 * size + 3 * (len(event(0).lp) + RECORD_OVERHEAD)
    spool = await open_spool(tmp_path / "s.sqlite", max_bytes=budget)
    for n in range(3):  # three plain chunks of 10, an event chunk after each
        await spool.put([sample(100 + 10 * n + i) for i in range(10)])
        await spool.put([event(n)])
    await spool.ack([2])  # a hole in the oldest chunk: room for one sample
    c = spool.counters()
    assert c.dropped == {} and c.depth == 32
    # 12 new samples, 11 too many: the 9 left of the first chunk go (one row), then the
    # 2 oldest of the second chunk (marked gone in it); events stay.
    await spool.put([sample(200 + i) for i in range(12)])
    c = spool.counters()
    assert c.dropped == {"spool_full": 11}
    samples = [r.ts_ns for r in await spool.peek(100, kind="sample")]
    assert samples == list(range(112, 130)) + list(range(200, 212))
    assert len(await spool.peek(100, kind="event")) == 3
    assert (c.depth, c.bytes, c.over_budget) == (33, budget, False)
    await spool.close()

    spool = await open_spool(tmp_path / "s.sqlite", max_bytes=budget)
    assert (spool.counters().depth, spool.counters().bytes) == (33, budget)
    await spool.close()


OLD_SCHEMA = """
CREATE TABLE record(
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, nbytes INTEGER NOT NULL, lp TEXT NOT NULL);
CREATE INDEX record_kind ON record(kind, id);
CREATE INDEX record_plain ON record(priority, id);
CREATE TABLE quarantine(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, lp TEXT NOT NULL, error TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


async def test_a_spool_of_the_row_per_record_format_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite"
    old = {i: sample(i) for i in range(1, 8)} | {8: event(8), 9: event(9)}
    old |= {i: sample(i) for i in range(12, 15)}
    del old[4]  # ids 4, 10 and 11 were acked, 15-20 too (the sequence is at 20)
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.executemany("INSERT INTO record VALUES(?, ?, ?, ?, ?, ?)",
                         [(i, r.kind, int(r.priority), r.ts_ns, len(r.lp) + RECORD_OVERHEAD,
                           r.lp) for i, r in old.items()])
        conn.execute("UPDATE sqlite_sequence SET seq=20 WHERE name='record'")
        conn.execute("INSERT INTO quarantine VALUES(3, 'sample', 0, 3, 'bad', 'err', 1.0)")
        conn.execute("INSERT INTO meta VALUES('downsample_watermark', '42')")
    conn.close()

    spool = await open_spool(path)
    got = await spool.peek(100)
    assert [(r.id, r.lp, r.kind, r.priority, r.ts_ns) for r in got] == [
        (i, r.lp, r.kind, r.priority, r.ts_ns) for i, r in old.items()]
    assert [r.id for r in await spool.peek(100, kind="event")] == [8, 9]
    c = spool.counters()
    assert (c.depth, c.bytes, c.quarantined) == (len(old), budget_bytes(list(old.values())), 1)
    assert await spool.get_meta("downsample_watermark") == "42"
    assert await spool.max_id() == 20
    assert await spool.put([sample(21)]) == [21]  # acked ids are not handed out again
    assert await spool.ack([5, 6]) == 2  # records of a migrated chunk ack one by one
    await spool.close()

    with sqlite3.connect(path) as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "record" not in tables
    spool = await open_spool(path)  # the second open finds nothing to migrate
    assert [r.id for r in await spool.peek(100)] == [1, 2, 3, 7, 8, 9, 12, 13, 14, 21]
    await spool.close()


def assert_same(batch: SpoolBatch, records: list[SpooledRecord]) -> None:
    """A batch holds what peek returns: ids, timestamps and lines, in one text."""
    assert list(batch.ids) == [r.id for r in records]
    assert list(batch.ts_ns) == [r.ts_ns for r in records]
    assert list(batch.lines.lines()) == [r.lp for r in records]
    assert batch.lines.text == "".join(f"{r.lp}\n" for r in records)


async def test_a_batch_holds_what_peek_returns_across_chunks_and_holes(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "s.sqlite")
    lf = Record('note,machine=m1 text="a\nb" 5', "sample", False, 5)  # a LF inside a line
    await spool.put([sample(1), sample(2), sample(3), lf])  # chunk 1-4
    await spool.put([event(6)])  # 5
    await spool.put([sample(i) for i in range(7, 12)])  # chunk 6-10
    await spool.ack([2, 8])
    for kind, min_id, max_id, limit in [(None, 0, None, 100), ("sample", 0, None, 100),
                                        ("sample", 3, 9, 100), ("sample", 0, None, 4),
                                        ("event", 0, None, 100), ("sample", 11, None, 5)]:
        want = await spool.peek(limit, kind=kind, min_id=min_id, max_id=max_id)
        assert_same(await spool.peek_batch(limit, kind=kind, min_id=min_id, max_id=max_id),
                    want)
    batch = await spool.peek_batch(100, kind="sample")
    assert list(batch.ids) == [1, 3, 4, 6, 7, 9, 10]
    head, tail = batch.split(3)
    assert_same(SpoolBatch.join([head, tail]), await spool.peek(100, kind="sample"))
    assert await spool.ack_batch(head) == 3
    assert await spool.ack_batch(head) == 0  # acked twice: counted once
    with pytest.raises(ValueError, match="not ascending"):
        SpoolBatch.join([tail, head])
    assert [r.id for r in await spool.peek(100)] == [5, 6, 7, 9, 10]
    assert spool.counters().depth == 5
    await spool.close()


async def test_chunks_without_lfs_are_converted(tmp_path: Path) -> None:
    """Chunks written before lines ended with a LF (by an older linemon, also after this one
    wrote chunks of its own; a record gone from one) come back the same, converted once."""
    import sqlite3
    import struct

    path = tmp_path / "s.sqlite"
    spool = await open_spool(path)
    assert await spool.put([event(0)]) == [1]  # a chunk of the current format
    await spool.close()
    lf = Record('note,machine=m1 text="a\nb" 3', "sample", False, 3)
    chunks = [[sample(1), sample(2), lf], [event(4), event(5)]]
    with sqlite3.connect(path) as conn:
        first = 2
        for recs in chunks:
            lines, ts = [r.lp for r in recs], [r.ts_ns for r in recs]
            ends = [sum(len(x) for x in lines[:i + 1]) for i in range(len(lines))]
            nbytes = sum(len(x.encode()) + RECORD_OVERHEAD for x in lines)
            conn.execute("INSERT INTO chunk VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                         (first + len(recs) - 1, first, recs[0].kind, int(recs[0].priority),
                          min(ts), nbytes,
                          struct.pack(f"<{len(ts)}q{len(ends)}I", *ts, *ends), "".join(lines)))
            first += len(recs)
        # id 3 was acked: marked gone in its chunk
        size = len(sample(2).lp) + RECORD_OVERHEAD
        conn.execute("INSERT INTO gone VALUES(4, ?, 1, ?, 1)", (bytes([0b010]), size))
    conn.close()

    want = [(1, event(0).lp), (2, sample(1).lp), (4, lf.lp), (5, event(4).lp),
            (6, event(5).lp)]
    left = [event(0), sample(1), lf, event(4), event(5)]
    for _ in range(2):  # the second open finds nothing to convert
        spool = await open_spool(path)
        got = await spool.peek(100)
        assert [(r.id, r.lp) for r in got] == want
        assert_same(await spool.peek_batch(100), got)
        c = spool.counters()
        assert (c.depth, c.bytes) == (5, budget_bytes(left))
        await spool.close()
    spool = await open_spool(path)
    assert await spool.ack([4]) == 1 and await spool.ack([2]) == 1  # the chunk goes
    assert spool.counters().bytes == budget_bytes([event(0), event(4), event(5)])
    assert await spool.quarantine([(5, "rejected")]) == 1
    assert [q.lp for q in await spool.list_quarantine()] == [event(4).lp]  # without its LF
    assert await spool.put([sample(7)]) == [7]
    await spool.close()
    with sqlite3.connect(path) as conn:  # what an older linemon cannot read: it says so
        metas = [(m, n) for m, n in conn.execute("SELECT meta, last_id - first_id + 1 FROM chunk")]
    conn.close()
    assert metas and all(len(m) == 12 * n + 1 and m.endswith(b"\n") for m, n in metas)
    with pytest.raises(struct.error):
        struct.unpack(f"<{metas[0][1]}q{metas[0][1]}I", metas[0][0])


async def test_random_operations_match_a_plain_model(tmp_path: Path) -> None:
    """Puts, peeks, partial acks, quarantines and restarts against a dict of what must be
    spooled: nothing lost, nothing twice, counters right."""
    import random

    rnd = random.Random(7)
    path = tmp_path / "s.sqlite"
    spool = await open_spool(path)
    model: dict[int, Record] = {}
    for step in range(150):
        op = rnd.random()
        if op < 0.35:
            recs = [sample(rnd.randrange(10**6)) if rnd.random() < 0.8 else event(step)
                    for _ in range(rnd.randrange(1, 40))]
            model |= dict(zip(await spool.put(recs), recs, strict=True))
        elif op < 0.6:
            kind = rnd.choice([None, "sample", "event"])
            low = rnd.randrange(0, max(model, default=0) + 2)
            got = await spool.peek(rnd.randrange(1, 50), kind=kind, min_id=low)
            want = [i for i in sorted(model) if i >= low and kind in (None, model[i].kind)]
            assert [r.id for r in got] == want[:len(got)] and len(got) == min(len(want),
                                                                               len(got))
            assert [r.lp for r in got] == [model[r.id].lp for r in got]
            batch = await spool.peek_batch(len(got) or 1, kind=kind, min_id=low)
            assert_same(batch, got)
            if got and rnd.random() < 0.5:  # as the forwarder acks: a batch, whole
                assert await spool.ack_batch(batch) == len(batch)
                for i in batch.ids:
                    del model[i]
            elif got:
                done = [r.id for r in got[:rnd.randrange(1, len(got) + 1)]]
                assert await spool.ack(done) == len(done)
                for i in done:
                    del model[i]
        elif op < 0.7 and model:
            victim = rnd.choice(sorted(model))
            assert await spool.quarantine([(victim, "rejected")]) == 1
            del model[victim]
        elif op < 0.8:
            await spool.close()
            spool = await open_spool(path)
        else:
            top = rnd.randrange(0, max(model, default=0) + 2)
            assert await spool.remaining(max_id=top) == sum(1 for i in model if i <= top)
            assert await spool.any_left(max_id=top) == any(i <= top for i in model)
        c = spool.counters()
        assert (c.depth, c.bytes) == (len(model), budget_bytes(list(model.values())))
    assert [r.id for r in await spool.peek(10**6)] == sorted(model)
    await spool.close()


def test_sqlite_memory_stays_bounded_by_the_spool_cache(tmp_path: Path) -> None:
    """A backlog of 20,000 records drained in forwarder-sized batches leaves SQLite's memory
    under 1 MiB (the spool's cache is CACHE_KIB), not at the 2 MiB its default cache fills to."""
    import ctypes
    import ctypes.util
    import sqlite3

    from collector.historian.spool_db import SpoolDb

    name = ctypes.util.find_library("sqlite3")
    lib = ctypes.CDLL(name) if name else None
    if lib is None:
        pytest.skip("no shared libsqlite3 to ask")
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    if lib.sqlite3_libversion().decode() != sqlite3.sqlite_version:
        pytest.skip("Python's sqlite3 is not the shared libsqlite3")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    db = SpoolDb(tmp_path / "s.sqlite", 10**10)
    try:
        before = lib.sqlite3_memory_used()
        for start in range(0, 20_000, 1000):  # ~2.4 MB of lines: more than 2 MiB of pages
            db.insert([[Record(f"sample,line=line-1,machine=m-{i % 50:02d},quality=good,"
                               f"signal=s{i % 10},source=mqtt value={i % 997 / 10!r} {i}",
                               "sample", False, i) for i in range(start, start + 1000)]])
        while len(batch := db.peek_batch(20_000, "sample", 0, None)):
            db.ack(batch.ids, True)
        grown = lib.sqlite3_memory_used() - before
    finally:
        db.close()
    assert grown < 1024 * 1024, grown  # the default cache: ~2 MiB
