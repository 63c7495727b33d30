"""The forwarder when it is behind: events arriving all the time do not starve the
samples; bigger requests while behind, batch_size again after. On both backends (a real
influxd, real SQLite files)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from historian_helpers import SEQ_T0, seq_sample, stored_seqs

from collector.historian import Historian
from collector.historian.forwarder import CATCHUP_FACTOR
from linemon.model import MachineState, StateChanged

BATCH = 5000  # the default batch_size


async def spool_at_once(h: Historian, first: int, n: int) -> None:
    """n samples in one spool transaction: the forwarder finds all of them waiting."""
    await h.spool.put([h._encoder.encode(seq_sample(i)) for i in range(first, first + n)])
    h.forwarder.notify("sample", n)


async def test_events_arriving_all_the_time_do_not_starve_the_samples(
        make_historian: Callable[..., Historian], request: pytest.FixtureRequest,
        backend_kind: str) -> None:
    """A new event in the spool at every cycle, on a saturated event loop: the samples must
    still go. (A cycle that wrote events used to start over, so the samples waited for a
    cycle that found no event: none came while the loop stayed busy.)"""
    server = request.getfixturevalue("influxd") if backend_kind == "influxdb" else None
    h = make_historian()
    await h.start()
    stop = asyncio.Event()

    async def events() -> None:  # every 2 ms; the spool commits them every 10 ms
        n = 0
        while not stop.is_set():
            at = SEQ_T0 + timedelta(milliseconds=n)
            await h.write_events([StateChanged("line-a", "press-1", at, MachineState.DOWN,
                                               MachineState.RUNNING, str(n))])
            n += 1
            await asyncio.sleep(0.002)

    async def busy_loop() -> None:  # a saturated event loop, as under the soak's ingest
        while not stop.is_set():
            time.sleep(0.02)  # noqa: ASYNC251 - holding the loop is the point
            await asyncio.sleep(0)

    producer = asyncio.create_task(events())
    busy = asyncio.create_task(busy_loop())
    try:
        await asyncio.sleep(0.5)  # the events flowing first
        await spool_at_once(h, 0, 20_000)
        stored_now = 0
        for _ in range(100):  # 10 s: the samples go while the events keep coming
            stored_now = len(await asyncio.to_thread(stored_seqs, h, server))
            if stored_now == 20_000:
                break
            await asyncio.sleep(0.1)
        assert stored_now == 20_000, f"{stored_now} of 20,000 samples stored in 10 s"
        assert not producer.done()
    finally:
        stop.set()
        await asyncio.gather(producer, busy)
        await h.close()


async def test_a_deep_spool_goes_in_bigger_requests_then_batch_size_again(
        make_historian: Callable[..., Historian], request: pytest.FixtureRequest,
        backend_kind: str) -> None:
    server = request.getfixturevalue("influxd") if backend_kind == "influxdb" else None
    h = make_historian()
    assert CATCHUP_FACTOR == 4 and h.forwarder._batch == BATCH  # the counts below
    await h.start()
    try:
        before = h.forwarder.counters.write_requests
        await spool_at_once(h, 0, 40_000)
        assert await h.flush(60), h.health()
        # 5,000 (full: double), 10,000 (full), 20,000 (full, the ceiling), 5,000 (not full)
        assert h.forwarder.counters.write_requests - before == 4
        # Caught up: the next request is batch_size again, not 20,000
        before = h.forwarder.counters.write_requests
        await spool_at_once(h, 40_000, 6_000)
        assert await h.flush(30), h.health()
        assert h.forwarder.counters.write_requests - before == 2
        assert sorted(stored_seqs(h, server)) == list(range(46_000))
    finally:
        await h.close()
