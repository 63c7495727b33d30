"""InfluxDB goes away mid-stream and comes back: 0 lost, 0 duplicated, replay time printed.

The suite runs the issue's 2-minute outage at 2,000 points/s (about 2.5 minutes); a quicker
look while developing is
    LINEMON_OUTAGE_S=30 pytest tests/historian/test_hist_outage.py -s
(LINEMON_OUTAGE_RATE sets the points per second, LINEMON_OUTAGE_REPLAY_RATE the replay cap;
by default 4x the rate, so that the cap is visible in the replay time).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from historian_helpers import MACHINE_LINES, TOKEN_ENV, InfluxServer, influx_config, wait_for

from collector.historian import Historian
from collector.historian.forwarder import Backoff
from linemon.model import Sample

OUTAGE_S = float(os.environ.get("LINEMON_OUTAGE_S", "120"))  # the 2 minutes
RATE = int(os.environ.get("LINEMON_OUTAGE_RATE", "2000"))
REPLAY_RATE = int(os.environ.get("LINEMON_OUTAGE_REPLAY_RATE", str(max(RATE * 4, 5000))))
TICK_S = 0.05

pytestmark = [pytest.mark.influx, pytest.mark.slow]



def seqs_in_influx(server: InfluxServer, bucket: str) -> list[int]:
    flux = (f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => '
            'r._measurement == "sample" and r.signal == "seq" and r._field == "value") '
            '|> keep(columns: ["_value"])')
    return [int(float(r["_value"])) for r in server.query_csv(flux)]


async def test_outage_loses_and_duplicates_nothing(influxd: InfluxServer, tmp_path: Path) -> None:
    config = influx_config(influxd, tmp_path, flush_interval_s=0.5)
    config.spool.replay_max_points_per_s = REPLAY_RATE
    h = Historian(config, machine_lines=MACHINE_LINES, env={TOKEN_ENV: influxd.token},
                  backoff=Backoff(0.1, 2.0))
    await h.start()
    t0 = datetime.now(UTC) - timedelta(hours=1)
    seq = 0
    stop = asyncio.Event()

    async def produce() -> None:  # RATE points/s in ticks, each with its sequence number
        nonlocal seq
        per_tick = max(1, int(RATE * TICK_S))
        next_at = time.monotonic()
        while not stop.is_set():
            batch = [Sample("press-1", "seq", n, t0 + timedelta(microseconds=100 * n), t0)
                     for n in range(seq, seq + per_tick)]
            await h.write_samples(batch)
            seq += per_tick
            next_at += TICK_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    producer = asyncio.create_task(produce())
    try:
        await wait_for(lambda: h.forwarder.counters.written >= RATE, 10, "first writes")
        influxd.kill()
        down_at = time.monotonic()
        await wait_for(lambda: h.health()["alarm"] == "outage", 10, "the outage alarm")
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        backlog = h.health()["backlog"]
        await asyncio.to_thread(influxd.start)  # same data dir, same port
        up_at = time.monotonic()
        await wait_for(lambda: h.health()["alarm"] is None, 30, "recovery")
        await wait_for(lambda: h.health()["backlog"] < RATE, 10 + backlog / RATE,
                       "the backlog to drain")
        replay_s = time.monotonic() - up_at
        stop.set()
        await producer
        assert await h.flush(30), h.health()
        total = seq
    finally:
        stop.set()
        await h.close()

    seqs = seqs_in_influx(influxd, config.backend.bucket)
    lost = total - len(set(seqs))
    dups = len(seqs) - len(set(seqs))
    print(f"\noutage {OUTAGE_S:.0f} s at {RATE} pts/s: {total} points, backlog {backlog} at "
          f"restart, replayed in {replay_s:.1f} s (cap {REPLAY_RATE}/s), lost {lost}, "
          f"duplicates {dups}")
    assert backlog >= RATE * OUTAGE_S * 0.8
    assert dups == 0
    assert sorted(set(seqs)) == list(range(total))
