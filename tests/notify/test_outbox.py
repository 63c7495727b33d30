"""The outbox and the worker on a real SQLite file and a real HTTP receiver: retries with
backoff, give-up, order, cancellation, idempotent queueing and exactly-once across restarts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from linemon.model import AlertChange
from rules.notify.channels import build_channel
from rules.notify.config import RetryConfig
from rules.notify.dispatch import Delivery, Dispatcher
from rules.notify.outbox import Outbox
from rules.notify.worker import DeliveryWorker
from tests.notify.helpers import alert, changed, config, shifts
from tests.notify.receivers import HttpReceiver
from tests.support.plants import eventually

FAST = RetryConfig(initial_s=0.05, factor=2, max_s=0.5, give_up_after_s=60)


def clock() -> datetime:
    return datetime.now(UTC)


def plan(receiver: HttpReceiver) -> tuple[list[Delivery], list[Delivery]]:
    """(firing, resolved) deliveries of one press stop, to ntfy (alice) and a webhook."""
    cfg = config(channels=[
        {"kind": "ntfy", "name": "phones", "server": receiver.url},
        {"kind": "webhook", "name": "hook", "url": f"{receiver.url}/hook/json"}],
        routes=[{"notify": [{"channel": "phones", "to": ["alice"]}, {"channel": "hook"}]}])
    d = Dispatcher(cfg, timezone="UTC", shift_at=shifts)
    a = alert(at=0)
    now = clock()
    fire = replace(changed(a, AlertChange.FIRING, 0), at=now)
    firing = d.on_change(fire) + d.on_tick(now)
    resolved = d.on_change(replace(changed(a, AlertChange.RESOLVED, 0), at=now))
    return ([x for x in firing if isinstance(x, Delivery)],
            [x for x in resolved if isinstance(x, Delivery)])


@asynccontextmanager
async def worker(path: Path, receiver: HttpReceiver, retry: RetryConfig = FAST
                 ) -> AsyncIterator[tuple[Outbox, DeliveryWorker]]:
    """An outbox and a running worker; stopping them is a linemon stop (or a crash)."""
    outbox = Outbox(path)
    await outbox.open()
    channels = {"phones": build_channel(config(channels=[
        {"kind": "ntfy", "name": "phones", "server": receiver.url}]).channels[0]),
        "hook": build_channel(config(channels=[
            {"kind": "webhook", "name": "hook", "url": f"{receiver.url}/hook/json"}]).channels[0])}
    w = DeliveryWorker(outbox, channels, retry, clock)
    task = asyncio.create_task(w.run())
    try:
        yield outbox, w
    finally:
        await w.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for c in channels.values():
            await c.close()
        await outbox.close()


async def statuses(outbox: Outbox) -> dict[str, str]:
    return {r.key: r.status for r in await outbox.deliveries()}


async def test_retries_with_backoff_until_the_receiver_answers(receiver, tmp_path) -> None:
    firing, _ = plan(receiver)
    receiver.fail_with = [503, 503]  # the first two requests fail
    async with worker(tmp_path / "outbox.sqlite", receiver) as (outbox, w):
        assert await outbox.add(firing) == 2
        w.wake()
        await eventually(lambda: len(receiver.received) == 2, 10, "both messages")
        await eventually(lambda: w.stats.delivered == 2, 5, "both marked delivered")
        rows = await outbox.deliveries()
    assert {r.status for r in rows} == {"delivered"}
    assert sum(r.attempts for r in rows) == 4 == receiver.attempts
    assert receiver.duplicates == 0


async def test_a_permanent_refusal_is_not_retried(receiver, tmp_path) -> None:
    firing, _ = plan(receiver)
    receiver.fail_with = [400]
    async with worker(tmp_path / "outbox.sqlite", receiver) as (outbox, w):
        await outbox.add(firing[:1])
        w.wake()
        await eventually(lambda: w.stats.failed == 1, 10, "the refusal")
        [row] = await outbox.deliveries(status="failed")
    assert row.attempts == 1 and "HTTP 400" in (row.last_error or "")


async def test_messages_of_one_incident_keep_their_order(receiver, tmp_path) -> None:
    firing, resolved = plan(receiver)
    receiver.fail_with = [503]  # firing to alice fails once; resolved must wait for it
    async with worker(tmp_path / "outbox.sqlite", receiver) as (outbox, w):
        await outbox.add(firing[:1] + resolved[:1])
        w.wake()
        await eventually(lambda: len(receiver.received) == 2, 10, "both messages")
    assert [r.body["title"].split(":")[0] for r in receiver.received] == ["CRITICAL", "RESOLVED"]


async def test_queueing_twice_is_queueing_once_and_cancel_drops_firing(receiver, tmp_path) -> None:
    firing, resolved = plan(receiver)
    await receiver.stop()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    await outbox.open()
    assert await outbox.add(firing) == 2
    assert await outbox.add(firing) == 0  # a restart that decides the same: ignored
    await outbox.add(resolved)
    assert await outbox.cancel(firing[0].incident, "acknowledged by alice") == 2
    assert sorted((await statuses(outbox)).values()) == [
        "cancelled", "cancelled", "pending", "pending"]
    await outbox.close()


async def test_a_crash_between_send_and_record_is_deduped_by_the_key(receiver, tmp_path) -> None:
    """Sent, then the process died before the outbox recorded it: it goes again, with the
    same Idempotency-Key, and the receiver counts it once."""
    path = tmp_path / "outbox.sqlite"
    firing, _ = plan(receiver)
    async with worker(path, receiver) as (outbox, w):
        await outbox.add(firing)
        w.wake()
        await eventually(lambda: w.stats.delivered == 2, 10, "delivery")
    with sqlite3.connect(path) as db:  # what a crash just before the UPDATE leaves behind
        db.execute("UPDATE delivery SET status='pending', delivered_at=NULL")
    async with worker(path, receiver) as (outbox, w):
        await eventually(lambda: w.stats.delivered == 2, 10, "the repeat after the restart")
    assert len(receiver.received) == 2 and receiver.duplicates == 2
    assert set(receiver.seen.values()) == {2}


async def test_gives_up_after_the_configured_time(receiver, tmp_path) -> None:
    await receiver.stop()
    firing, _ = plan(receiver)
    retry = RetryConfig(initial_s=0.05, factor=1, max_s=0.05, give_up_after_s=0.5)
    async with worker(tmp_path / "outbox.sqlite", receiver, retry) as (outbox, w):
        await outbox.add(firing)
        w.wake()
        await eventually(lambda: w.stats.failed == 2, 10, "giving up")
        rows = await outbox.deliveries()
    assert all(r.status == "failed" and r.attempts >= 2 for r in rows)
