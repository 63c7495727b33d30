"""The downtime list is filtered, ordered and cut in the store (SQL / Flux), not in Python.

Both backends page through stops with ties in start (several machines stopping at the same
instant) and in duration, an open stop, coded and uncoded stops, and must give exactly the
pages `select_downtime` (the reference: every stop sorted in Python) gives.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from historian_helpers import BASE, NOW

from collector.historian import Historian
from collector.historian.query import select_downtime
from linemon.model import DowntimeCategory, DowntimeEnded, DowntimeEvent, DowntimeStarted

MACHINES = [("line-a", "press-1"), ("line-a", "press-2"), ("line b", "weld 1,=\\x")]
CODES = ["17", None, "42", "17", "5"]


def stops() -> list[DowntimeEvent]:
    out = []
    for k in range(24):
        line, machine = MACHINES[k % 3]
        # k // 3: the three machines stop at the same instant (ties in start); durations
        # repeat every four stops (ties in duration), one with a sub-second part.
        start = BASE + timedelta(minutes=5 * (k // 3), seconds=k % 2)
        length = timedelta(seconds=(30, 90, 90, 600.25)[k % 4])
        code = CODES[k % 5]
        out.append(DowntimeEvent(
            f"{machine}:{k:02d}", line, machine, start, start + length, code,
            None if code is None else f"reason {code}",
            category=DowntimeCategory.CHANGEOVER if code == "5" else
            DowntimeCategory.UNPLANNED, micro_stop=length.total_seconds() < 60))
    # still open at NOW: nearly 90 minutes, the longest
    out.append(DowntimeEvent("press-1:open", "line-a", "press-1",
                             NOW - timedelta(minutes=90, seconds=-7)))
    return out


async def seed(h: Historian) -> None:
    events: list[object] = []
    for ev in stops():
        events.append(DowntimeStarted(ev) if ev.end is None else DowntimeEnded(ev))
    await h.write_events(events)
    assert await h.flush(20), h.health()


async def every_page(h: Historian, limit: int, **search: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await h.query.downtime_events(start=BASE, end=NOW, limit=limit, cursor=cursor,
                                             **search)
        pages.append([ev.id for ev in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100


def reference(limit: int, line: str | None = None, machine: str | None = None,
              **search: Any) -> list[list[str]]:
    events = [ev for ev in stops() if line in (None, ev.line) and machine in (None, ev.machine)]
    pages, cursor = [], None
    while True:
        page = select_downtime(events, now=NOW, limit=limit, cursor=cursor, **search)
        pages.append([ev.id for ev in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("order", ["start_desc", "start_asc", "duration_desc"])
async def test_pages_pushed_into_the_store_are_the_reference_pages(
        historian: Historian, order: str) -> None:
    await seed(historian)
    for search in ({}, {"machine": "press-1"}, {"line": "line b"}, {"reason_code": "17"},
                   {"uncoded_only": True}, {"category": "changeover"},
                   {"min_duration_s": 90}, {"min_duration_s": 90.5, "reason_code": "17"}):
        for limit in (1, 4, 100):
            want = reference(limit, order=order, **search)
            got = await every_page(historian, limit, order=order, **search)
            assert got == want, (order, search, limit)
    # the first page alone: the ties are where a wrong order or a wrong cut shows
    first = await historian.query.downtime_events(start=BASE, end=NOW, limit=5, order=order)
    want = select_downtime(stops(), now=NOW, limit=5, order=order)
    assert first.items == want.items and first.next_cursor == want.next_cursor


async def test_pages_carry_the_whole_stop(historian: Historian) -> None:
    await seed(historian)
    page = await historian.query.downtime_events(start=BASE, end=NOW, limit=3,
                                                 order="duration_desc")
    by_id = {ev.id: ev for ev in stops()}
    assert page.items == [by_id[ev.id] for ev in page.items]
    assert page.items[0].id == "press-1:open"  # an open stop lasts until now
    everything = await historian.query.all_downtime_events(start=BASE, end=NOW)
    assert everything == sorted(stops(), key=lambda ev: (ev.start, ev.id))
    changeovers = await historian.query.all_downtime_events(start=BASE, end=NOW,
                                                            category="changeover")
    assert [ev.id for ev in changeovers] == [
        ev.id for ev in everything if ev.category == DowntimeCategory.CHANGEOVER]


async def test_a_persons_coding_is_what_the_store_filters_on(historian: Historian) -> None:
    await seed(historian)
    q = historian.query
    await q.code_downtime("press-2:01", "61", "conveyor", by="ana", at=NOW)  # was uncoded
    await q.code_downtime("press-1:00", "42", "overheat", by="ana", at=NOW)  # was 17
    coded = await q.downtime_events(start=BASE, end=NOW, reason_code="61")
    assert [ev.id for ev in coded.items] == ["press-2:01"]
    jams = await q.downtime_events(start=BASE, end=NOW, reason_code="17", order="start_asc")
    assert "press-1:00" not in [ev.id for ev in jams.items]
    uncoded = await q.downtime_events(start=BASE, end=NOW, uncoded_only=True, limit=1000)
    assert "press-2:01" not in [ev.id for ev in uncoded.items]
