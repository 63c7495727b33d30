"""The durable spool: group commit, ack-only removal, drop policy, quarantine, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.historian.spool import RECORD_OVERHEAD, Record, Spool

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
