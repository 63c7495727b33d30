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

from linemon.model import AlertChange, AlertChanged, MachineState, Quality, Sample, StateChanged
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


async def test_the_tick_pages_a_second_stop_while_the_spool_cannot_write(tmp_path: Path) -> None:
    """The engine's tick announces what it makes without waiting for the disk: with the
    spool stuck after one stop's alert, the next machine's stop still pages. The alerts have
    a hold, so the tick task fires them (not the tick in the stop's own step) once it
    has passed."""
    rules = {"machine_stop": {"after_s": 1}}
    async with running_plant(tmp_path, history=False, rules=rules) as (lm, clock):
        lm._writer = asyncio.create_task(lm._write_events())  # what lm.start() runs, without
        lm._tasks.append(asyncio.create_task(lm._tick()))     # sources (no broker here)
        clock.now = BASE
        await lm.ingest([Sample(m, "state", STATE["run"], BASE, BASE, Quality.GOOD, "gw")
                         for m in ("press-a1", "weld-a2")])
        live = lm.listen()

        async def firing(machine: str) -> None:
            while True:
                event = await live.get()
                if (isinstance(event, AlertChanged) and event.change is AlertChange.FIRING
                        and event.alert.labels.get("machine") == machine):
                    return

        blocker = sqlite3.connect(tmp_path / "spool.sqlite", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck disk would
        batches = []
        try:
            for i, machine in enumerate(("press-a1", "weld-a2"), start=1):
                clock.now = at = BASE + timedelta(seconds=10 * i)
                stop = Sample(machine, "state", STATE["down"], at, at, Quality.GOOD, "gw")
                batches.append(asyncio.create_task(lm.ingest([stop])))
                await asyncio.sleep(0.05)  # the stop is in: its alert is pending, held 1 s
                assert not live.empty() and lm.engine.alerts.next_due() == at + timedelta(
                    seconds=1)
                clock.now = at + timedelta(seconds=2)
                lm._wake.set()  # the plant's clock jumped past the hold: tell the tick task
                await asyncio.wait_for(firing(machine), 3)
            assert not any(b.done() for b in batches), "the batches wait for the disk"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(asyncio.gather(*batches), 15)
