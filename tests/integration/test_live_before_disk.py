"""A stop reaches live listeners (boards, notifications) without waiting for the spool's
disk, and the batch is still done only once its samples and events are durable.

The spool is the real SQLite one; another connection holds its write lock, as a slow or
stuck disk would, while a stop goes through `Linemon.ingest`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from linemon.model import MachineState, Quality, Sample, StateChanged
from tests.api.conftest import running_plant
from tests.api.plant import BASE, STATE


async def test_a_stop_reaches_listeners_while_the_spool_cannot_write(tmp_path: Path) -> None:
    async with running_plant(tmp_path, history=False) as (lm, clock):
        clock.now = BASE
        await lm.ingest([Sample("press-a1", "state", STATE["run"], BASE, BASE, Quality.GOOD,
                                "gw")])
        live = lm.listen()
        appended = lm.historian.counters()["spool"]["appended"]
        blocker = sqlite3.connect(tmp_path / "spool.sqlite", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck disk would
        try:
            at = BASE + timedelta(seconds=1)
            stop = Sample("press-a1", "state", STATE["down"], at, at, Quality.GOOD, "gw")
            batch = asyncio.create_task(lm.ingest([stop]))
            event = await asyncio.wait_for(live.get(), 3)
            while not isinstance(event, StateChanged):
                event = await asyncio.wait_for(live.get(), 3)
            assert (event.machine, event.state) == ("press-a1", MachineState.DOWN)
            # the spool cannot write while the lock is held: the batch must still be waiting
            done, _ = await asyncio.wait({batch}, timeout=0.3)
            assert not done, "the batch must wait until it is durable"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(batch, 10)
        # the stop's sample and its events went to the spool in one commit, and on to history
        assert lm.historian.counters()["spool"]["appended"] >= appended + 3
        assert await lm.historian.flush(10)
        stop_id = f"press-a1:{at.isoformat()}"
        stored = await lm.historian.query.get_downtime(stop_id)
        assert stored is not None and stored.end is None, stored
