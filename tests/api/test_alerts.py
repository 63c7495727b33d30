"""Alerts: listing, acknowledging and silencing, with who may do it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from linemon.model import AlertChange, AlertChanged, Quality, Sample
from tests.api.conftest import Api, running_plant, serving_api
from tests.api.plant import NOW
from tests.support.plants import next_event


def firing_weld(api: Api) -> str:
    [alert] = [a for a in api.lm.engine.alerts.active() if a.labels.get("machine") == "weld-a2"]
    return alert.fingerprint


@pytest.mark.asyncio(loop_scope="module")
async def test_active_and_recent_alerts(shared_api: Api) -> None:
    active = await shared_api.json("/api/v1/alerts", "viewer")
    assert [(a["rule_id"], a["machine"], a["state"]) for a in active] == [
        ("machine_stopped", "weld-a2", "firing")]
    recent = await shared_api.json("/api/v1/alerts", "viewer", params={"status": "recent"})
    assert {a["state"] for a in recent} == {"resolved"}
    # Resolved alerts stay listed for 15 minutes: press-a1's stop at 50-58, not older ones.
    assert [a["machine"] for a in recent] == ["press-a1"]
    line_a = await shared_api.json("/api/v1/alerts", "viewer",
                                   params={"status": "all", "line": "line-a"})
    assert [a["machine"] for a in line_a] == ["weld-a2", "press-a1"]
    assert await shared_api.json("/api/v1/alerts", "viewer", params={"line": "line-b"}) == []


async def test_acknowledge_needs_a_supervisor_and_the_first_ack_stands(api: Api) -> None:
    fingerprint = firing_weld(api)
    path = f"/api/v1/alerts/{fingerprint}/ack"
    events = api.lm.listen()
    assert (await api.call("POST", path, "operator")).status_code == 403
    assert (await api.call("POST", path, "supervisor-b")).status_code == 403  # line-a alert
    first = await api.call("POST", path, "supervisor")
    assert first.status_code == 200
    assert (first.json()["acknowledged_by"], first.json()["acknowledged_at"]) == (
        "supervisor", NOW.isoformat().replace("+00:00", "Z"))
    changed = await next_event(events, AlertChanged, 5)
    assert changed.change is AlertChange.ACKNOWLEDGED  # published: history and boards see it
    again = await api.call("POST", path, "admin")
    assert again.status_code == 200 and again.json()["acknowledged_by"] == "supervisor"
    missing = await api.call("POST", "/api/v1/alerts/0123456789abcdef/ack", "supervisor")
    assert missing.status_code == 404
    malformed = await api.call("POST", "/api/v1/alerts/not-a-fingerprint/ack", "supervisor")
    assert malformed.status_code == 422


async def test_a_pending_alert_cannot_be_acknowledged(tmp_path: Path) -> None:
    rules = {"machine_stop": {"after_s": 300}}
    async with running_plant(tmp_path, history=False, rules=rules) as (lm, clock), \
            serving_api(lm, clock) as api:
        clock.now = NOW
        await lm.ingest([Sample("weld-a2", "state", 4, NOW, NOW, Quality.GOOD, "gw")])
        await lm.publish(lm.engine.on_tick(NOW))
        [alert] = await api.json("/api/v1/alerts")
        assert alert["state"] == "pending"
        response = await api.call("POST", f"/api/v1/alerts/{alert['fingerprint']}/ack")
        assert response.status_code == 409 and "pending" in response.json()["detail"]


async def test_silence_marks_alerts_until_it_is_ended(api: Api) -> None:
    body = {"machine": "weld-a2", "duration_s": 3600, "comment": "waiting for the fitter"}
    assert (await api.call("POST", "/api/v1/silences", "operator", json=body)).status_code == 403
    created = await api.call("POST", "/api/v1/silences", "supervisor", json=body)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["active"] and silence["matchers"] == {"machine": "weld-a2"}
    assert silence["ends_at"] == (NOW + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    await api.lm.publish(api.lm.engine.on_tick(NOW))  # silences apply on the engine's tick
    [alert] = await api.json("/api/v1/alerts")
    assert alert["silenced_by"] == silence["id"] and alert["notifiable"] is False
    assert [s["id"] for s in await api.json("/api/v1/silences", "viewer")] == [silence["id"]]
    assert await api.json("/api/v1/silences", "viewer-b") == []
    path = f"/api/v1/silences/{silence['id']}"
    assert (await api.call("DELETE", path, "supervisor-b")).status_code == 403
    ended = await api.call("DELETE", path, "supervisor")
    assert ended.status_code == 200 and ended.json()["active"] is False
    assert await api.json("/api/v1/silences") == []
    assert (await api.call("DELETE", path, "supervisor")).status_code == 404


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("body", "says"), [
    ({"duration_s": 600, "comment": "x"}, "name a line, a machine or a rule"),
    ({"line": "line-z", "duration_s": 600, "comment": "x"}, "no line 'line-z'"),
    ({"line": "line-b", "machine": "press-a1", "duration_s": 600, "comment": "x"},
     "is on line 'line-a'"),
    ({"line": "line-a", "duration_s": 30, "comment": "x"}, "duration_s"),
    ({"line": "line-a", "duration_s": 600, "comment": ""}, "comment"),
    ({"line": "line-a", "duration_s": 600, "comment": "x", "starts_at": "2026-03-02T06:00:00"},
     "needs a UTC offset"),
    ({"line": "line-a", "duration_s": 600, "comment": "x", "matchers": {}}, "Extra inputs"),
])
async def test_silence_refusals(shared_api: Api, body: dict[str, Any], says: str) -> None:
    response = await shared_api.call("POST", "/api/v1/silences", "supervisor", json=body)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]
