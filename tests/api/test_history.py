"""History endpoints on both historian backends: the same questions, the same answers.

The expected numbers come from the scripted hour in plant.py, worked out by hand; the
OEE history is also checked against the live OEE the engine computed for the same shift.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.plant import BASE, NOW, stop_id

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one history per backend, shared
WINDOW = {"start": BASE.isoformat(), "end": NOW.isoformat()}
ALL_STOPS = [stop_id("weld-a2", 60), stop_id("press-a1", 50), stop_id("weld-a2", 40),
             stop_id("press-a1", 30), stop_id("press-b1", 25), stop_id("weld-a2", 20),
             stop_id("press-a1", 10)]  # newest first


async def stops(api: Api, **params: Any) -> list[dict[str, Any]]:
    page = await api.json("/api/v1/downtime", params={**WINDOW, "limit": 1000, **params})
    assert page["next_cursor"] is None
    return page["items"]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [d["id"] for d in items]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ALL_STOPS),
    ({"line": "line-b"}, [stop_id("press-b1", 25)]),
    ({"machine": "press-a1"}, [stop_id("press-a1", m) for m in (50, 30, 10)]),
    ({"reason": "17"}, [stop_id("weld-a2", 60), stop_id("press-b1", 25), stop_id("press-a1", 10)]),
    ({"category": "changeover"}, [stop_id("weld-a2", 20)]),
    ({"min_duration_s": 300}, [stop_id("weld-a2", 60), stop_id("press-a1", 50),
                               stop_id("weld-a2", 20), stop_id("press-a1", 10)]),
    ({"uncoded_only": True, "line": "line-a"}, [stop_id("press-a1", 50), stop_id("weld-a2", 20)]),
    ({"start": (BASE + timedelta(minutes=30)).isoformat()}, ALL_STOPS[:4]),
    ({"order": "start_asc"}, ALL_STOPS[::-1]),
    ({"order": "duration_desc", "line": "line-a"},
     [stop_id("weld-a2", 20), stop_id("weld-a2", 60), stop_id("press-a1", 50),
      stop_id("press-a1", 10), stop_id("weld-a2", 40), stop_id("press-a1", 30)]),
])
async def test_downtime_filters_and_order(history_api: Api, params: dict[str, Any],
                                          expected: list[str]) -> None:
    assert ids(await stops(history_api, **params)) == expected


async def test_downtime_event_fields(history_api: Api) -> None:
    items = {d["id"]: d for d in await stops(history_api)}
    jam = items[stop_id("press-a1", 10)]
    assert (jam["reason_code"], jam["reason_text"], jam["duration_s"], jam["open"]) == (
        "17", "Jam", 300.0, False)
    assert items[stop_id("press-a1", 30)]["micro_stop"] is True
    still_down = items[stop_id("weld-a2", 60)]
    assert still_down["open"] is True and still_down["end"] is None
    assert still_down["duration_s"] == 600.0  # measured to the plant's now
    one = await history_api.json(f"/api/v1/downtime/{stop_id('press-a1', 10)}")
    assert one == jam


@pytest.mark.parametrize("order", ["start_desc", "start_asc", "duration_desc"])
async def test_pagination_round_trip(history_api: Api, order: str) -> None:
    everything = ids(await stops(history_api, order=order))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {**WINDOW, "limit": 2, "order": order, **({"cursor": cursor} if cursor else {})}
        page = await history_api.json("/api/v1/downtime", params=params)
        seen += ids(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything and pages == 4


async def test_a_cursor_only_fits_its_own_query(history_api: Api) -> None:
    page = await history_api.json("/api/v1/downtime", params={**WINDOW, "limit": 2})
    other = await history_api.get("/api/v1/downtime", params={
        **WINDOW, "limit": 2, "order": "duration_desc", "cursor": page["next_cursor"]})
    assert other.status_code == 422 and "cursor" in other.json()["detail"]
    forged = await history_api.get("/api/v1/downtime", params={**WINDOW, "cursor": "e30"})
    assert forged.status_code == 422


async def test_csv_and_ndjson_export_match_the_list(history_api: Api) -> None:
    listed = await stops(history_api, line="line-a")
    response = await history_api.get("/api/v1/downtime/export",
                                     params={**WINDOW, "line": "line-a", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in rows] == ids(listed)
    assert rows[-1]["reason_text"] == "Jam" and float(rows[-1]["duration_s"]) == 300.0
    assert rows[0]["end"] == ""  # still open
    ndjson = await history_api.get("/api/v1/downtime/export",
                                   params={**WINDOW, "line": "line-a", "format": "ndjson"})
    lines = [json.loads(line) for line in ndjson.text.splitlines()]
    assert [r["id"] for r in lines] == ids(listed)
    assert lines[0]["end"] is None


async def test_pareto_by_minutes_and_by_count(history_api: Api) -> None:
    pareto = await history_api.json("/api/v1/pareto", params={**WINDOW, "line": "line-a"})
    rows = [(r["reason_code"], r["count"], r["minutes"]) for r in pareto["reasons"]]
    assert rows == [("17", 2, 15.0), (None, 1, 8.0), ("31", 1, 4.0), ("23", 1, 0.3333)]
    assert pareto["total_count"] == 5 and pareto["total_minutes"] == pytest.approx(27.3333)
    assert pareto["reasons"][-1]["cumulative_share"] == 1.0
    by_count = await history_api.json("/api/v1/pareto", params={
        **WINDOW, "line": "line-a", "sort": "count"})
    assert [r["reason_code"] for r in by_count["reasons"]] == ["17", None, "31", "23"]
    changeovers = await history_api.json("/api/v1/pareto", params={
        **WINDOW, "line": "line-a", "category": "changeover"})
    assert [(r["reason_code"], r["minutes"]) for r in changeovers["reasons"]] == [(None, 15.0)]


async def test_mtbf_and_mttr_per_machine(history_api: Api) -> None:
    rows = {r["machine"]: r for r in await history_api.json("/api/v1/reliability",
                                                             params=WINDOW)}
    press = rows["press-a1"]  # failures 10-15 and 50-58; the 20 s micro-stop is run time
    assert (press["failures"], press["failure_downtime_s"], press["operating_time_s"]) == (
        2, 780.0, 3420.0)
    assert (press["mtbf_s"], press["mttr_s"]) == (1710.0, 390.0)
    weld = rows["weld-a2"]  # 40-44 ended; the stop open since 60 is not a failure yet
    assert (weld["failures"], weld["mttr_s"], weld["operating_time_s"]) == (1, 240.0, 2460.0)
    assert rows["press-b1"]["mtbf_s"] == 4080.0


async def test_oee_history_equals_the_live_oee_of_the_same_shift(history_api: Api) -> None:
    periods = await history_api.json("/api/v1/oee", params={**WINDOW, "line": "line-a"})
    live = await history_api.json("/api/v1/lines/line-a")
    expected = {m["machine"]: m["oee"] for m in live["machines"]} | {None: live["oee"]}
    assert {p["machine"] for p in periods} == set(expected)
    for period in periods:
        assert period["shift"] == live["shift"]
        assert period["start"] == WINDOW["start"].replace("+00:00", "Z")
        for key, value in expected[period["machine"]].items():
            assert period["oee"][key] == pytest.approx(value), (period["machine"], key)
    press = next(p for p in periods if p["machine"] == "press-a1")["oee"]
    assert press["availability"] == pytest.approx(3420 / 4200)
    days = await history_api.json("/api/v1/oee", params={**WINDOW, "line": "line-a",
                                                         "by": "day", "machine": "press-a1"})
    assert len(days) == 1 and days[0]["shift"] is None
    assert days[0]["oee"] == press


@pytest.mark.parametrize("by", ["shift", "day"])
async def test_oee_over_two_shifts(history_api: Api, by: str) -> None:
    """The hour before BASE is the previous shift, with nothing known: no planned time."""
    params = {"start": (BASE - timedelta(hours=1)).isoformat(), "end": NOW.isoformat(),
              "line": "line-a", "machine": "press-a1", "by": by}
    periods = await history_api.json("/api/v1/oee", params=params)
    assert len(periods) == (2 if by == "shift" else len({p["day"] for p in periods}))
    assert sum(p["oee"]["planned_time_s"] for p in periods) == 4200.0
    assert sum(p["oee"]["good_count"] for p in periods) == 52 * 25
    if by == "shift":
        earlier, current = periods
        assert earlier["end"] == current["start"] and earlier["oee"]["availability"] is None


async def test_state_timeline(history_api: Api) -> None:
    timeline = await history_api.json(
        "/api/v1/lines/line-a/machines/press-a1/timeline", params=WINDOW)
    states = [(iv["state"], iv["duration_s"]) for iv in timeline["intervals"]]
    assert states == [("running", 600.0), ("down", 300.0), ("running", 900.0), ("down", 20.0),
                      ("running", 1180.0), ("down", 480.0), ("running", 720.0)]


async def test_signal_series_and_counts(history_api: Api) -> None:
    base = "/api/v1/lines/line-a/machines/press-a1"
    mean = await history_api.json(f"{base}/signals/temperature",
                                  params={**WINDOW, "every_s": 600})
    assert [p["value"] for p in mean["points"]] == [62.0] * 7
    peak = await history_api.json(f"{base}/signals/temperature",
                                  params={**WINDOW, "every_s": 600, "agg": "max"})
    assert {p["value"] for p in peak["points"]} == {64.0}
    counts = await history_api.json(f"{base}/counts", params={**WINDOW, "every_s": 600})
    live = await history_api.json(f"{base}")
    assert len(counts["buckets"]) == 7
    assert sum(b["good"] for b in counts["buckets"]) == live["good"] == 52 * 25
    assert sum(b["reject"] for b in counts["buckets"]) == live["reject"]
    unknown = await history_api.get(f"{base}/signals/pressure", params=WINDOW)
    assert unknown.status_code == 404 and "temperature" in unknown.json()["detail"]
