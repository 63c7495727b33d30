"""The live view over REST, and the WebSocket board on a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from api.app import create_app
from api.live_hub import URGENT_GAP_S
from linemon.model import Quality, Sample
from tests.api.conftest import Api, Served, running_plant, uvicorn_serving
from tests.api.plant import KEY, NOW, bearer
from tests.support.plants import eventually


def machines(line: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["machine"]: m for m in line["machines"]}


@pytest.mark.asyncio(loop_scope="module")
async def test_line_snapshot_from_the_engine(shared_api: Api) -> None:
    line = await shared_api.json("/api/v1/lines/line-a", "viewer")
    assert line["at"] == NOW.isoformat().replace("+00:00", "Z")
    states = {mid: m["state"] for mid, m in machines(line).items()}
    assert states == {"press-a1": "running", "weld-a2": "down"}
    weld = machines(line)["weld-a2"]
    assert (weld["reason_code"], weld["reason_text"], weld["time_in_state_s"]) == (
        "17", "Jam", 600.0)
    assert [a["machine"] for a in line["alerts"]] == ["weld-a2"]
    assert line["actual"] == weld["good"] and line["target"] == 9000
    summary = await shared_api.json("/api/v1/lines", "viewer")
    assert [(s["line"], s["running"], s["down"], s["alerts"]) for s in summary] == [
        ("line-a", 1, 1, 1), ("line-b", 1, 0, 0)]
    detail = await shared_api.json("/api/v1/lines/line-a/machines/press-a1", "viewer")
    assert detail == machines(line)["press-a1"]


async def test_line_snapshot_has_progress_losses_and_bottleneck(shared_api: Api) -> None:
    line = await shared_api.json("/api/v1/lines/line-a", "viewer")
    view = shared_api.lm.engine.line_view("line-a", NOW)
    progress = line["progress"]
    assert (progress["target"], progress["actual"]) == (9000, line["actual"])
    assert progress["elapsed_planned_s"] == 4200.0
    assert progress["moving_target"] == pytest.approx(line["moving_target"])
    losses = line["losses"]
    assert [s["machine"] for s in losses] == [s.machine for s in view.losses]
    assert sum(s["share"] for s in losses) == pytest.approx(1.0)
    assert all(s["total_s"] == pytest.approx(sum(s["losses_s"].values())) for s in losses)
    bottleneck = line["bottleneck"]
    assert view.bottleneck is not None and bottleneck["machine"] == view.bottleneck.machine
    assert bottleneck["shift"]["main"] == (view.bottleneck.shift.main
                                           if view.bottleneck.shift else None)
    weld = machines(line)["weld-a2"]["oee"]
    assert weld["failures"] == 2 and weld["mttr_s"] == pytest.approx(
        weld["losses_s"]["breakdowns"] / 2)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1/lines/line-z", 404),
    ("/api/v1/lines/line-a/machines/press-b1", 404),
    ("/api/v1/lines/line%20a", 422),
])
async def test_live_unknowns(shared_api: Api, path: str, status: int) -> None:
    response = await shared_api.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


class NoHistory:
    """Stands in for the history store: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a live route touched the history store ({name})")


async def test_live_routes_never_query_the_history_store(api: Api) -> None:
    historian = api.lm.historian
    store, historian.store = historian.store, NoHistory()
    try:
        for path in ("/api/v1/lines", "/api/v1/lines/line-a",
                     "/api/v1/lines/line-a/machines/weld-a2"):
            assert (await api.get(path, "kiosk-a")).status_code == 200
    finally:
        historian.store = store


async def test_snapshot_is_serialized_once_until_the_line_changes(api: Api) -> None:
    hub = api.app.state.hub
    await api.json("/api/v1/lines/line-a")
    before = hub.serializations
    for _ in range(5):
        await api.json("/api/v1/lines/line-a")
    assert hub.serializations == before  # same plant second, no event: the cached bytes
    at = NOW + timedelta(seconds=0.5)  # same second: only the event invalidates the cache
    api.clock.now = at
    await api.lm.ingest([Sample("weld-a2", "state", 1, at, at, Quality.GOOD, "gw")])

    async def weld_running() -> bool:
        line = await api.json("/api/v1/lines/line-a")
        return machines(line)["weld-a2"]["state"] == "running"

    await eventually(weld_running, 5, "the snapshot to show weld-a2 running again")
    assert hub.serializations > before


# --- WebSocket on a real server ------------------------------------------------------------


async def receive(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def receive_until(ws: ClientConnection, match: Callable[[dict[str, Any]], bool],
                        timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        message = await receive(ws, left)
        if match(message):
            return message
    raise AssertionError(f"no matching message within {timeout_s}s")


def board_url(served: Served, line: str = "line-a", key: str | None = "kiosk-a") -> str:
    query = f"?key={KEY[key].key}" if key else ""
    return f"ws://{served.url}/api/v1/lines/{line}/live{query}"


async def test_websocket_snapshot_then_a_stop_pushed_as_a_state_change(served: Served) -> None:
    lm, clock = served.api.lm, served.api.clock
    async with connect(board_url(served)) as ws:
        first = await receive(ws)
        assert (first["type"], first["seq"], first["changes"]) == ("snapshot", 0, [])
        assert machines(first["line"])["press-a1"]["state"] == "running"
        at = NOW + timedelta(seconds=5)
        clock.now = at
        await lm.ingest([Sample("press-a1", "fault_code", 17, at, at, Quality.GOOD, "gw"),
                         Sample("press-a1", "state", 4, at, at, Quality.GOOD, "gw")])

        def press_stopped(message: dict[str, Any]) -> bool:
            return any(c["kind"] == "state" and c["machine"] == "press-a1"
                       and c["state"] == "down" for c in message["changes"])

        pushed = await receive_until(ws, press_stopped)
        press = machines(pushed["line"])["press-a1"]
        assert (press["state"], press["reason_code"], press["reason_text"]) == (
            "down", "17", "Jam")
        started = next(c for c in pushed["changes"] if c["kind"] == "downtime_started")
        assert started["id"] == f"press-a1:{at.isoformat()}"
        # At most one message a second, heartbeats included.
        stamps = []
        for _ in range(2):
            await receive(ws)
            stamps.append(time.monotonic())
        assert stamps[1] - stamps[0] >= 0.9


async def test_a_stop_and_its_unheld_alert_reach_the_board_in_one_push(tmp_path: Path) -> None:
    """The engine ticks in the step that ingested the stop, so the alert of a rule without a
    hold is announced with the state change, not later by the tick task (not even running
    here): one push carries both, with no wait for the alert to catch up."""
    async with running_plant(tmp_path, rules={"machine_stop": {"after_s": 0}}) as (lm, clock), \
            uvicorn_serving(create_app(lm, manage=False)) as (url, _):
        query = f"?key={KEY['kiosk-a'].key}"
        async with connect(f"ws://{url}/api/v1/lines/line-a/live{query}") as ws:
            await receive(ws)
            at = NOW + timedelta(seconds=5)
            clock.now = at
            await lm.ingest([Sample("press-a1", "fault_code", 17, at, at, Quality.GOOD, "gw"),
                             Sample("press-a1", "state", 4, at, at, Quality.GOOD, "gw")])
            pushed = await receive_until(ws, lambda m: any(
                c["kind"] == "state" and c["machine"] == "press-a1" for c in m["changes"]))
    press = [(c["kind"], c.get("state"), c.get("change")) for c in pushed["changes"]
             if c["machine"] == "press-a1" and c["kind"] in ("state", "alert")]
    assert press == [("state", "down", None), ("alert", "firing", "firing")]
    [alert] = [a for a in pushed["line"]["alerts"] if a["machine"] == "press-a1"]
    assert (alert["rule_id"], alert["state"]) == ("machine_stopped", "firing")


async def test_a_flapping_machine_s_changes_all_reach_the_board_in_fewer_pushes(
        served: Served) -> None:
    lm, clock = served.api.lm, served.api.clock
    async with connect(board_url(served)) as ws:
        await receive(ws)
        began = time.monotonic()
        for i in range(40):  # up, down, up, ... (it is down at NOW), faster than URGENT_GAP_S
            at = NOW + timedelta(seconds=10, milliseconds=10 * i)
            clock.now = at
            await lm.ingest([Sample("weld-a2", "state", 1 if i % 2 == 0 else 4, at, at,
                                    Quality.GOOD, "gw")])
            await asyncio.sleep(URGENT_GAP_S / 3)
        flood_s = time.monotonic() - began
        pushes, changes, last = 0, 0, None
        deadline = time.monotonic() + 2.0  # heartbeats keep coming: stop listening at some point
        with contextlib.suppress(TimeoutError):
            while changes < 40 and (left := deadline - time.monotonic()) > 0:
                message = await receive(ws, left)
                flapped = [c for c in message["changes"]
                           if c["kind"] == "state" and c["machine"] == "weld-a2"]
                if flapped:
                    pushes += 1
                    changes += len(flapped)
                    last = machines(message["line"])["weld-a2"]["state"]
    assert changes == 40  # every change is told
    assert last == "down"
    assert 2 <= pushes < 40, (pushes, flood_s)


async def test_websocket_reconnect_starts_with_a_full_snapshot(served: Served) -> None:
    for _ in range(2):
        async with connect(board_url(served), additional_headers=bearer("viewer")) as ws:
            first = await receive(ws)
            assert first["seq"] == 0 and len(first["line"]["machines"]) == 2
    await eventually(lambda: served.api.app.state.hub.subscribers == 0, 5,
                     "the hub to forget closed boards")


@pytest.mark.parametrize(("line", "key", "headers", "status"), [
    ("line-a", None, {}, 401),
    ("line-a", None, {"Authorization": "Bearer not-a-key-0000000000"}, 401),
    ("line-b", "kiosk-a", {}, 403),
    ("line-z", "admin", {}, 404),
])
async def test_websocket_refusals_are_http_answers(served: Served, line: str, key: str | None,
                                                   headers: dict[str, str], status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(board_url(served, line, key), additional_headers=headers):
            pass
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["status"] == status
