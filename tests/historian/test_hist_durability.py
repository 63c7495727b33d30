"""Durability on both backends: kill -9 with a full spool, poison points, capped replay."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from historian_helpers import (
    MACHINE_LINES,
    SEQ_T0,
    TOKEN_ENV,
    free_port,
    seq_sample,
    stored_seqs,
    wait_for,
)

from collector.historian import Historian
from collector.historian.config import HistorianConfig
from collector.historian.forwarder import Backoff
from collector.historian.spool import Record
from linemon.model import MachineState, Sample

REPO = Path(__file__).resolve().parents[2]
def config_for_down_store(h: Historian, tmp: Path) -> dict[str, Any]:
    """The same config, but with a store that cannot be reached (what a crash leaves behind)."""
    data = json.loads(h.config.model_dump_json())
    if data["backend"]["kind"] == "sqlite":
        blocker = tmp / "not-a-file"
        blocker.mkdir()  # sqlite cannot open a directory: the store is "down"
        data["backend"]["path"] = str(blocker)
    else:
        data["backend"]["url"] = f"http://127.0.0.1:{free_port()}"  # nobody listens
    return data


CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from datetime import datetime, timedelta
    from collector.historian import Historian
    from collector.historian.config import HistorianConfig
    from linemon.model import MachineState, Sample, StateChanged

    async def main():
        cfg = HistorianConfig.model_validate(json.loads(sys.argv[1]))
        t0 = datetime.fromisoformat(sys.argv[2])
        h = Historian(cfg, machine_lines={"press-1": "line-a"})
        await h.start()
        seq = 0
        while True:
            samples = [Sample("press-1", "seq", n, t0 + timedelta(microseconds=500 * n), t0)
                       for n in range(seq, seq + 100)]
            state = StateChanged("line-a", "press-1", t0 + timedelta(milliseconds=seq),
                                 MachineState.DOWN, MachineState.RUNNING, str(seq))
            await asyncio.gather(h.write_samples(samples), h.write_events([state]))
            seq += 100
            print(seq, flush=True)  # confirmed: durable in the spool

    asyncio.run(main())
""")


async def test_kill_9_with_data_in_the_spool(
        make_historian: Callable[..., Historian], backend_kind: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("influxd") if backend_kind == "influxdb" else None
    h = make_historian()
    child_cfg = config_for_down_store(h, tmp_path)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    if server is not None:
        env[TOKEN_ENV] = server.token
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; reads go to a thread
        [sys.executable, "-c", CHILD, json.dumps(child_cfg), SEQ_T0.isoformat()],
        stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    confirmed = 0
    while confirmed < 5000:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            pytest.fail(f"writer died early with {proc.wait()}")
        confirmed = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    await h.start()  # same spool, the store is reachable now
    try:
        assert h.spool.counters().depth >= confirmed
        assert await h.flush(60), h.health()
        seqs = stored_seqs(h, server)
        assert len(seqs) == len(set(seqs)), "duplicates"
        assert set(range(confirmed)) <= set(seqs), "lost points"
        timeline = await h.query.state_timeline("press-1", SEQ_T0, SEQ_T0 + timedelta(hours=2))
        codes = {int(s.reason_code) for s in timeline if s.reason_code is not None}
        assert set(range(0, confirmed, 100)) <= codes  # every confirmed event arrived
        assert all(s.state is MachineState.DOWN for s in timeline)
    finally:
        await h.close()


async def test_poison_point_is_quarantined_without_a_retry_loop(
        make_historian: Callable[..., Historian], request: pytest.FixtureRequest,
        backend_kind: str) -> None:
    server = request.getfixturevalue("influxd") if backend_kind == "influxdb" else None
    h = make_historian()
    await h.start()
    try:
        await h.write_samples([seq_sample(0)])  # `value` is a float field from here on
        assert await h.flush(10)
        records = [h._encoder.encode(seq_sample(i)) for i in range(1, 5001)]
        key, _, ts = records[2500].lp.split(" ")  # seq 2501 becomes a string: type conflict
        bad_lp = f'{key} value="not a number" {ts}'
        records[2500] = Record(bad_lp, "sample", False, int(ts))
        before = h.forwarder.counters.write_requests
        await h.spool.put(records)  # one transaction: the forwarder sees one 5,000 batch
        h.forwarder.notify("sample", len(records))
        assert await h.flush(30), h.health()
        requests = h.forwarder.counters.write_requests - before
        quarantined = await h.list_quarantine()
        assert [q.lp for q in quarantined] == [bad_lp]
        assert "type" in quarantined[0].error or "float" in quarantined[0].error
        seqs = stored_seqs(h, server)
        assert sorted(seqs) == [i for i in range(5001) if i != 2501]  # 4,999 + the first
        assert requests <= 2 * math.ceil(math.log2(5000)) + 1  # bisection, not a loop
        assert await h.flush(2)  # nothing left: the bad point is not retried
        assert h.forwarder.counters.write_requests - before == requests
        assert h.health()["quarantined"] == 1
    finally:
        await h.close()


async def test_replay_is_capped_and_live_data_stays_fresh(tmp_path: Path) -> None:
    cfg = HistorianConfig.model_validate({
        "backend": {"kind": "sqlite", "path": str(tmp_path / "h.sqlite")},
        "spool": {"path": str(tmp_path / "s.sqlite"), "replay_max_points_per_s": 4000}})
    backlog = 12_000  # left by a previous run: 3 s of replay at the cap
    first = Historian(cfg, machine_lines=MACHINE_LINES)
    await first.spool.open()
    await first.spool.put([first._encoder.encode(seq_sample(i)) for i in range(backlog)])
    await first.spool.close()

    h = Historian(cfg, machine_lines=MACHINE_LINES, backoff=Backoff(0.05, 0.5))
    started = time.monotonic()
    await h.start()
    try:
        live = Sample("press-1", "live", 1.0, SEQ_T0, SEQ_T0)
        await h.write_samples([live])

        async def live_stored() -> bool:
            got = await h.query.signal_series("press-1", "live", SEQ_T0,
                                              SEQ_T0 + timedelta(seconds=1), 1)
            return bool(got)

        await wait_for(live_stored, 2.0, "the live sample")
        assert h.spool.counters().depth > backlog / 3, "live waited for the backlog"
        assert await h.flush(30)
        elapsed = time.monotonic() - started
        # The bucket starts full (one second's worth), the rest comes at the cap.
        assert elapsed >= (backlog - 4000) / 4000 * 0.9, f"replay not capped: {elapsed:.1f}s"
        assert len(set(stored_seqs(h))) == backlog
        assert h.forwarder.counters.last_replay_s is not None
    finally:
        await h.close()
