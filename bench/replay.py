"""Figure (8): spool replay rate after an InfluxDB outage, vs a raw line-protocol POST loop.

    python -m bench.replay [--reps 5] [--points 50000]

A real influxd. Each linemon repetition: stop influxd; write N samples (1,000 per call,
as a source batch would) through linemon's historian, which spools them (SQLite WAL,
fsync) while every write to influxd fails; start influxd again (same port and data);
time from the forwarder's first acknowledged write after the outage until the spool is
empty, and count what it replayed in that time. The historian gets a short retry backoff
(0.05..0.2 s) so the time influxd needs to answer again is not part of the figure.

Cases, interleaved: linemon as configured by default (`replay_max_points_per_s: 50000`,
batches of 5,000: replay is capped on purpose so it never delays live data), linemon with
the cap lifted (what the forwarder itself can do), and the ceiling: the same lines POSTed
to /api/v2/write in batches of 5,000 over one keep-alive connection, uncompressed (the
forwarder does not gzip either), precision ns.
"""

from __future__ import annotations

import argparse
import http.client
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import harness
from bench.rig import BUCKET, influx_backend, influxd, workdir
from collector.historian.config import HistorianConfig
from collector.historian.forwarder import Backoff
from collector.historian.historian import Historian
from collector.historian.schema import SampleEncoder
from linemon.event_loop import run as run_on_loop
from linemon.model import Sample
from tests.support.influx import InfluxServer

FIGURE = "8-replay"
BATCH = 5000
DEFAULT_CAP = 50_000
_epoch = [datetime.now(UTC) - timedelta(days=1)]


def samples(n: int) -> list[Sample]:
    """N distinct points (500 tags x N/500 seconds), newer on every call."""
    start = _epoch[0]
    _epoch[0] = start + timedelta(seconds=n // 500 + 1)
    out = []
    for i in range(n):
        ts = start + timedelta(seconds=i // 500)
        out.append(Sample(f"m{i % 50:04d}", f"signal_{i % 10}", 50.0 + i % 7, ts, ts,
                          source="plc"))
    return out


async def replay_linemon(influx: InfluxServer, n: int, cap: int) -> dict[str, float]:
    with workdir("replay") as data:
        config = HistorianConfig.model_validate({
            "backend": influx_backend(influx.url),
            "spool": {"path": str(data / "spool.sqlite"), "replay_max_points_per_s": cap}})
        historian = Historian(config, machine_lines={f"m{i:04d}": "line-1" for i in range(50)},
                              backoff=Backoff(base_s=0.05, cap_s=0.2))
        await historian.start()
        influx.stop()  # the outage
        try:
            batch = samples(n)
            for first in range(0, n, 1000):
                await historian.write_samples(batch[first:first + 1000])
            counters = historian.forwarder.counters
            written_before = counters.written
        finally:
            influx.start()
        await harness.poll_until(lambda: counters.written > written_before, 60)
        t0, c0, w0 = time.monotonic(), harness.cpu_seconds(), counters.written
        await harness.poll_until(lambda: historian.spool.counters().depth == 0, 120)
        t1, c1 = time.monotonic(), harness.cpu_seconds()
        depth = historian.spool.counters().depth
        await historian.close(2)
    if depth:
        raise TimeoutError(f"replay left {depth} of {n} points in the spool after 120 s")
    replayed = n - (w0 - written_before)  # the first batch landed before t0
    return {"points": replayed, "seconds": t1 - t0, "cpu_s": c1 - c0,
            "rate": replayed / (t1 - t0)}


def replay_raw(influx: InfluxServer, n: int) -> dict[str, float]:
    encoder = SampleEncoder({f"m{i:04d}": "line-1" for i in range(50)})
    lines = [encoder.encode(s).lp for s in samples(n)]
    bodies = ["\n".join(lines[i:i + BATCH]).encode() for i in range(0, n, BATCH)]
    conn = http.client.HTTPConnection("127.0.0.1", influx.port, timeout=60)
    conn.connect()
    harness.nodelay(conn.sock)
    path = f"/api/v2/write?org=linemon-test&bucket={BUCKET}&precision=ns"
    headers = {"Authorization": f"Token {influx.token}",
               "Content-Type": "text/plain; charset=utf-8"}
    t0 = time.monotonic()
    for body in bodies:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"influxd answered {response.status} to a raw write")
    t1 = time.monotonic()
    conn.close()
    return {"points": n, "seconds": t1 - t0, "rate": n / (t1 - t0)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2 if harness.quick() else 5)
    parser.add_argument("--points", type=int, default=20_000 if harness.quick() else 50_000)
    args = parser.parse_args(argv)
    n = args.points
    with influxd() as influx:
        runs = harness.interleave(args.reps, {
            "linemon (default cap 50k/s)": lambda: run_on_loop(
                replay_linemon(influx, n, DEFAULT_CAP)),
            "linemon (cap lifted)": lambda: run_on_loop(replay_linemon(influx, n, 10**9)),
            "raw POST loop (ceiling)": lambda: replay_raw(influx, n),
        })
    ceiling = harness.Stats.of([r["rate"] for r in runs["raw POST loop (ceiling)"]])
    out: dict[str, Any] = {"points": n, "batch": BATCH, "cases": {}}
    rows = []
    for case, results in runs.items():
        rate = harness.Stats.of([r["rate"] for r in results])
        ratios = harness.Stats.of([r["rate"] / c["rate"] for r, c in
                                   zip(results, runs["raw POST loop (ceiling)"], strict=True)])
        out["cases"][case] = {"rate": rate.as_dict(), "ratio": ratios.as_dict(),
                              "runs": results}
        rows.append([case, rate.spread("{:,.0f}"), ratios.spread("{:.2f}")])
    out["ceiling_rate_median"] = ceiling.median
    harness.print_table(
        f"(8) spool replay after an influxd outage, {n:,} points, records/s, median "
        f"(min..max) of {args.reps} interleaved reps", ["case", "records/s", "vs ceiling"],
        rows)
    return harness.record(FIGURE, out)


if __name__ == "__main__":
    main()
