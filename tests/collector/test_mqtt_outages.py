"""MQTT at 500 msg/s, QoS 1, through broker kills and a linemon kill: nothing lost, no doubles.

Every message carries a sequence number; what reached the spool (the emit callback after
`write_samples` returned, or the SQLite history) is counted by it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector.historian.historian import Historian
from tests.collector.brokers import persistent_often
from tests.collector.harness import Recorder, SeqPublisher, plant_config, source_named, supervised
from tests.support.plants import ALL_DAY, REPO, eventually
from tests.support.services import Mosquitto

TOPIC = "plant/line-1/stream-1/count"
KILLS = 5


def stream(port: int, client_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    source = {"kind": "mqtt", "name": "gateway", "port": port, "client_id": client_id,
              "session_expiry_s": 600}
    machine = {"id": "stream-1", "source": "gateway", "ideal_cycle_time_s": 1.0,
               "tags": {"total_count": {"topic": TOPIC + "/total", "type": "int"},
                        "seq": {"topic": TOPIC, "type": "int"}}}
    return source, machine


def newest_seq(recorder: Recorder) -> int:
    return max(recorder.values("stream-1", "seq"), default=0)


def lost_and_doubled(recorder: Recorder, published: int) -> tuple[list[int], list[int]]:
    """The seqs 1..published that never reached the spool, and those that did twice."""
    seqs = recorder.values("stream-1", "seq")
    return (sorted(set(range(1, published + 1)) - set(seqs)),
            sorted(seq for seq, n in Counter(seqs).items() if n > 1))


@pytest.mark.slow
async def test_five_broker_kills_lose_nothing(tmp_path: Path) -> None:
    broker = persistent_often(tmp_path / "broker")
    broker.start()
    source_config, machine = stream(broker.port, "linemon-broker-kills")
    config = plant_config([source_config], [machine], tmp_path)
    historian = Historian(config.historian, machine_lines={"stream-1": "line-1"})
    await historian.start()
    source, recorder = source_named(config, "gateway"), Recorder(historian)
    publisher = SeqPublisher(broker.port, TOPIC, rate=500, client_id="stream-publisher")
    newest = functools.partial(newest_seq, recorder)
    reconnect_s: list[float] = []

    try:
        async with supervised(source, recorder):
            await eventually(lambda: source.stats.connected, 10, "the subscription")
            publisher.start()
            for kill in range(1, KILLS + 1):
                # A second of stream, and kill while linemon keeps up: then every message the
                # broker acknowledged has reached linemon's socket already (persistent_often).
                since = publisher.published
                await eventually(lambda s=since: publisher.published > s + 500 and
                                 newest() >= publisher.published - 100, 20, "linemon caught up")
                broker.stop(kill=True)
                killed = time.monotonic()
                broker.start()
                await eventually(lambda k=kill: source.stats.connected and
                                 len(source.stats.gaps) == k, 15, "linemon back on the broker")
                reconnect_s.append(time.monotonic() - killed)
            await eventually(lambda: newest() >= publisher.published - 100, 20, "catching up")
            publisher.stop_publishing()
            await eventually(lambda: publisher.acked == publisher.published, 30,
                             "the publisher's queue to drain")
            await eventually(lambda: newest() == publisher.published, 30, "the last message")
    finally:
        publisher.close()
        broker.stop()
        await historian.close()

    lost, doubled = lost_and_doubled(recorder, publisher.published)
    print(f"\nbroker kills: {publisher.published} messages, lost {len(lost)}, delivered twice "
          f"{len(doubled)}, duplicates removed {source.stats.duplicates}, linemon back after "
          f"{[round(s, 2) for s in reconnect_s]} s")
    assert lost == [] and doubled == []
    assert len(source.stats.gaps) == KILLS
    assert len([s for s in recorder.bad() if s.signal == "seq"]) == KILLS  # bad from each gap
    assert dict(source.stats.rejected) == {}


async def test_a_failing_spool_write_delays_the_batch_and_loses_nothing(
        persistent_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The spool unable to write for a while (here another connection holds its write lock
    past SQLite's busy timeout, as a stuck disk would) holds the batch back and retries it;
    the source waits. Failing it instead would lose it: the duplicate screens have seen its
    messages and would drop the broker's redelivered copies as repeats."""
    source_config, machine = stream(persistent_mosquitto.port, "linemon-spool-fails")
    config = plant_config([source_config], [machine], tmp_path)
    historian = Historian(config.historian, machine_lines={"stream-1": "line-1"})
    await historian.start()
    source, recorder = source_named(config, "gateway"), Recorder(historian)
    publisher = SeqPublisher(persistent_mosquitto.port, TOPIC, rate=500,
                             client_id="spool-fails-publisher")
    newest = functools.partial(newest_seq, recorder)
    blocker = sqlite3.connect(config.historian.spool.path, isolation_level=None)
    try:
        async with supervised(source, recorder):
            await eventually(lambda: source.stats.connected, 10, "the subscription")
            publisher.start()
            await eventually(lambda: newest() > 500, 20, "the stream flowing")
            blocker.execute("BEGIN IMMEDIATE")
            try:
                await eventually(lambda: historian.spool_write_failures >= 1, 30,
                                 "a failed write")
                health = historian.health()
                assert (health["ok"], health["alarm"]) == (False, "spool_write_failing")
                assert "locked" in health["spool_error"]
            finally:
                blocker.execute("ROLLBACK")
            await eventually(lambda: historian.health()["spool_error"] is None, 30,
                             "the spool writing again")
            await eventually(lambda: newest() >= publisher.published - 100, 20, "catching up")
            publisher.stop_publishing()
            await eventually(lambda: newest() == publisher.published, 30, "the last message")
    finally:
        blocker.close()
        publisher.close()
        await historian.close()

    lost, doubled = lost_and_doubled(recorder, publisher.published)
    print(f"\nspool unable to write: {publisher.published} messages, lost {len(lost)}, "
          f"delivered twice {len(doubled)}, {historian.spool_write_failures} failed writes")
    assert lost == [] and doubled == []
    assert source.stats.gaps == []  # the session held: the source only waited


# --- linemon itself killed -------------------------------------------------------------


async def start_linemon(config_file: Path, log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """`linemon run` in a process of its own; returns it and its API's URL once it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "linemon.cli", "run", "--config", str(config_file), "--port", "0",
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"))
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert b"event loop: uvloop" in line, line  # linemon/event_loop.py
    url = line.decode().split(" on ", 1)[1].split()[0]
    async with httpx.AsyncClient(base_url=url) as client:
        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200
        await eventually(ready, 20, "linemon ready (its MQTT session up)")
    return process, url


def stored_seqs(history: Path) -> list[int]:
    if not history.exists():
        return []
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True, timeout=5) as db:
        try:
            rows = db.execute("SELECT value FROM sample WHERE machine = 'stream-1' AND "
                              "signal = 'seq' AND quality = 'good'").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    return [int(value) for (value,) in rows]


@pytest.fixture
async def broker(persistent_mosquitto: Mosquitto) -> AsyncIterator[Mosquitto]:
    yield persistent_mosquitto


@pytest.mark.slow
async def test_killed_linemon_gets_every_unspooled_message_again(
        tmp_path: Path, broker: Mosquitto) -> None:
    source_config, machine = stream(broker.port, "linemon-crash-test")
    history = tmp_path / "history.sqlite"
    config_file = tmp_path / "plant.yaml"
    config_file.write_text(yaml.safe_dump({
        "site": {"name": "crash test", "timezone": "UTC"}, "calendar": ALL_DAY,
        "sources": [source_config], "lines": [{"id": "line-1", "machines": [machine]}],
        "historian": {"backend": {"kind": "sqlite", "path": str(history)},
                      "spool": {"path": str(tmp_path / "spool.sqlite")}},
        "api": {"anonymous": {"role": "viewer"}},
    }))
    log = tmp_path / "linemon.log"
    process, _ = await start_linemon(config_file, log)
    publisher = SeqPublisher(broker.port, TOPIC, rate=500, client_id="crash-publisher")
    publisher.start()
    try:
        await eventually(lambda: len(stored_seqs(history)) > 500, 20, "the stream stored")
        # Frozen first, so that the broker certainly has messages out to linemon's socket
        # (up to its in-flight window) that linemon never spooled; then killed.
        process.send_signal(signal.SIGSTOP)
        frozen_at = publisher.published
        await eventually(lambda: publisher.published > frozen_at + 300, 10, "more stream")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        at_kill = publisher.published
        stored_at_kill = len(set(stored_seqs(history)))
        process, _ = await start_linemon(config_file, log)
        await eventually(lambda: publisher.published >= at_kill + 1000, 20, "more stream")
        publisher.stop_publishing()
        await eventually(lambda: publisher.acked == publisher.published, 30,
                         "the publisher's queue to drain")
        await eventually(lambda: len(set(stored_seqs(history))) == publisher.published, 30,
                         "every message in the history")
    finally:
        publisher.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                raise
    seqs = stored_seqs(history)
    print(f"\nlinemon frozen at {frozen_at} published, killed at {at_kill} with {stored_at_kill} "
          f"in the history; after the restart all {publisher.published} stored, {len(seqs)} rows")
    assert sorted(seqs) == list(range(1, publisher.published + 1))  # once each, none missing
