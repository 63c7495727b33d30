"""Reason coding: operators and above code stops; every edit is kept in the audit trail."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timedelta

import pytest

from linemon.model import OeeSnapshot, Quality, Sample
from tests.api.conftest import Api
from tests.api.plant import BASE, NOW, stop_id

UNCODED = stop_id("press-a1", 50)
WINDOW = {"start": BASE.isoformat(), "end": NOW.isoformat()}


async def test_coding_a_stop_keeps_an_audit_trail(fresh_history_api: Api) -> None:
    api = fresh_history_api
    api.clock.now = NOW + timedelta(minutes=1)
    put = await api.call("PUT", f"/api/v1/downtime/{UNCODED}/reason", "operator",
                         json={"reason_code": "31"})
    assert put.status_code == 200, put.text
    coded = put.json()
    assert (coded["reason_code"], coded["reason_text"], coded["coded_by"]) == (
        "31", "Material shortage", "operator")
    api.clock.now = NOW + timedelta(minutes=2)
    patch = await api.call("PATCH", f"/api/v1/downtime/{UNCODED}", "maintenance",
                           json={"note": "pallet late from the warehouse"})
    assert patch.status_code == 200, patch.text
    assert (patch.json()["reason_code"], patch.json()["note"]) == (
        "31", "pallet late from the warehouse")
    assert await api.json(f"/api/v1/downtime/{UNCODED}") == patch.json()
    uncoded = await api.json("/api/v1/downtime", params={
        **WINDOW, "line": "line-a", "uncoded_only": True})
    assert [d["id"] for d in uncoded["items"]] == [stop_id("weld-a2", 20)]
    audit = await api.json(f"/api/v1/downtime/{UNCODED}/audit", "viewer")
    assert [(e["by"], e["at"]) for e in audit] == [
        ("operator", (NOW + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")),
        ("maintenance", (NOW + timedelta(minutes=2)).isoformat().replace("+00:00", "Z"))]
    assert (audit[0]["before"]["reason_code"], audit[0]["after"]["reason_code"]) == (None, "31")
    assert (audit[1]["before"]["note"], audit[1]["after"]["note"]) == (
        None, "pallet late from the warehouse")
    pareto = await api.json("/api/v1/pareto", params={**WINDOW, "line": "line-a"})
    assert None not in [r["reason_code"] for r in pareto["reasons"]]


async def test_the_machines_own_end_does_not_undo_a_persons_code(fresh_history_api: Api) -> None:
    api = fresh_history_api
    open_stop = stop_id("weld-a2", 60)
    put = await api.call("PUT", f"/api/v1/downtime/{open_stop}/reason", "operator",
                         json={"reason_code": "23", "note": "tool changed"})
    assert put.status_code == 200 and put.json()["open"] is True
    end = NOW + timedelta(minutes=5)
    api.clock.now = end
    await api.lm.ingest([Sample("weld-a2", "state", 1, end, end, Quality.GOOD, "gw")])
    assert await api.lm.historian.flush(10)
    after = await api.json(f"/api/v1/downtime/{open_stop}")
    assert after["end"] is not None and after["duration_s"] == 900.0
    assert (after["reason_code"], after["reason_text"], after["note"]) == (
        "23", "Tool break", "tool changed")


@pytest.mark.parametrize(("method", "path", "who", "body", "status", "says"), [
    ("PUT", f"/api/v1/downtime/{UNCODED}/reason", "viewer", {"reason_code": "17"}, 403,
     "operator role"),
    ("PUT", f"/api/v1/downtime/{UNCODED}/reason", "operator", {"reason_code": "99"}, 422,
     "unknown code '99'"),
    ("PUT", f"/api/v1/downtime/{UNCODED}/reason", "operator", {"note": "x"}, 422,
     "body.reason_code"),
    ("PATCH", f"/api/v1/downtime/{UNCODED}", "operator", {}, 422, "reason_code, a note"),
    ("PATCH", f"/api/v1/downtime/{UNCODED}", "operator", {"note": "x"}, 422,
     "no reason yet"),
    ("PATCH", f"/api/v1/downtime/{UNCODED}", "operator", {"note": "x", "by": "someone"}, 422,
     "body.by: Extra inputs"),
    ("PUT", "/api/v1/downtime/press-a1:1999-01-01T00:00:00+00:00/reason", "operator",
     {"reason_code": "17"}, 404, "no downtime event"),
    ("PUT", f"/api/v1/downtime/{UNCODED}/reason", "operator-b", {"reason_code": "17"}, 403,
     "line-a"),
])
@pytest.mark.asyncio(loop_scope="module")
async def test_coding_refusals(shared_api: Api, method: str, path: str, who: str, body: dict,
                               status: int, says: str) -> None:
    response = await shared_api.call(method, path, who, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]


async def test_csv_export_defuses_spreadsheet_formulas(api: Api) -> None:
    note = '=HYPERLINK("http://evil.example","click")'
    await api.call("PUT", f"/api/v1/downtime/{UNCODED}/reason", "operator",
                   json={"reason_code": "31", "note": note})
    export = await api.get("/api/v1/downtime/export", params={**WINDOW, "machine": "press-a1"})
    row = next(r for r in csv.DictReader(io.StringIO(export.text)) if r["id"] == UNCODED)
    assert row["note"] == "'" + note
    ndjson = await api.get("/api/v1/downtime/export", params={
        **WINDOW, "machine": "press-a1", "format": "ndjson"})
    assert note.replace('"', '\\"') in ndjson.text  # JSON is data, not a formula: kept as is


async def test_parts_at_one_instant_all_reach_history(api: Api) -> None:
    """A good and a reject count at one instant are two engine events but one history point."""
    at = NOW + timedelta(minutes=1)
    api.clock.now = at
    await api.lm.ingest([Sample("press-b1", "good_count", 99_999, at, at, Quality.GOOD, "gw"),
                         Sample("press-b1", "reject_count", 99, at, at, Quality.GOOD, "gw")])
    assert await api.lm.historian.flush(10)
    live = await api.json("/api/v1/lines/line-b/machines/press-b1")
    counts = await api.json("/api/v1/lines/line-b/machines/press-b1/counts", params={
        "start": BASE.isoformat(), "end": (at + timedelta(seconds=1)).isoformat(),
        "every_s": 86_400})
    assert sum(b["good"] for b in counts["buckets"]) == live["good"]
    assert sum(b["reject"] for b in counts["buckets"]) == live["reject"] == 99


async def test_a_closed_shift_shows_its_final_oee_not_a_replay(fresh_history_api: Api) -> None:
    """The final snapshot keeps the ideal cycle time in force when the shift closed (here
    1.5 s, a product since retired); a replay could only use today's configuration."""
    api = fresh_history_api
    lm = api.lm
    earlier = lm.engine.calendar.shift_at(BASE - timedelta(seconds=1))
    assert earlier is not None and earlier.end == BASE
    live = lm.engine.machine_view("press-a1", NOW).oee
    assert live is not None
    figures = replace(live, ideal_cycle_time_s=1.5, failures=7, mtbf_s=99.0)
    line = replace(figures, good_count=1)
    await lm.historian.write_events([
        OeeSnapshot(earlier.end, "line-a", "press-a1", figures, earlier.key, final=True),
        OeeSnapshot(earlier.end, "line-a", None, line, earlier.key, final=True),
        OeeSnapshot(earlier.end - timedelta(minutes=5), "line-a", "weld-a2", figures,
                    earlier.key)])  # a live figure, not the final one: never shown
    assert await lm.historian.flush(30)
    params = {"start": earlier.start.isoformat(), "end": NOW.isoformat(), "line": "line-a"}
    periods = await api.json("/api/v1/oee", params=params)
    before = {p["machine"]: p for p in periods if p["shift"] == earlier.name}
    assert before["press-a1"]["source"] == "final"
    assert before["press-a1"]["oee"]["ideal_cycle_time_s"] == 1.5
    assert (before["press-a1"]["oee"]["failures"], before["press-a1"]["oee"]["mtbf_s"]) == (
        7, 99.0)
    assert before[None]["source"] == "final" and before[None]["oee"]["good_count"] == 1
    assert before["weld-a2"]["source"] == "replay"
    now = [p for p in periods if p["shift"] != earlier.name]
    assert now and all(p["source"] == "replay" for p in now)  # the shift still running
    days = await api.json("/api/v1/oee", params={**params, "by": "day"})
    assert all(p["source"] == "replay" for p in days)
