"""Who may do what: the role matrix read from the OpenAPI document, scoping, throttling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import ROLES
from linemon.app import Linemon
from linemon.config import ConfigError
from tests.api.conftest import Api, running_plant, serving_api
from tests.api.plant import BASE, KEY, KEYS, NOW, KeySpec, bearer, plant_config, stop_id

WRITE_METHODS = {"post", "put", "patch", "delete"}
WINDOW = {"start": BASE.isoformat(), "end": NOW.isoformat()}


@dataclass
class Call:
    """A valid request for one operation, and what a permitted key gets back."""

    path: str | Callable[[Api], str]
    ok: int = 200
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    line: str | None = None  # the line the request touches (path, query or resource)


def _fresh_silence(a: Api) -> str:
    silence = a.lm.engine.alerts.silence({"line": "line-a"}, NOW, NOW + timedelta(hours=1),
                                         "test", "to be ended")
    return f"/api/v1/silences/{silence.id}"


def _firing(a: Api) -> str:
    [alert] = [x for x in a.lm.engine.alerts.active() if x.labels.get("machine") == "weld-a2"]
    return f"/api/v1/alerts/{alert.fingerprint}/ack"


STOP = stop_id("press-a1", 10)
M = "/api/v1/lines/line-a/machines/press-a1"
# One entry per operationId; a new route without one fails the matrix (by design).
CALLS: dict[str, Call] = {
    "healthz_healthz_get": Call("/healthz"),
    "readyz_readyz_get": Call("/readyz", ok=503),  # sources never start in these tests
    "metrics_metrics_get": Call("/metrics"),
    "list_lines_api_v1_lines_get": Call("/api/v1/lines"),
    "get_line_api_v1_lines__line__get": Call("/api/v1/lines/line-a", line="line-a"),
    "get_machine_api_v1_lines__line__machines__machine__get": Call(M, line="line-a"),
    "list_downtime_api_v1_downtime_get": Call(
        "/api/v1/downtime", params={"line": "line-a", **WINDOW}, line="line-a"),
    "export_downtime_api_v1_downtime_export_get": Call(
        "/api/v1/downtime/export", params={"line": "line-a", **WINDOW}, line="line-a"),
    "list_reasons_api_v1_reasons_get": Call("/api/v1/reasons"),
    "get_downtime_api_v1_downtime__downtime_id__get": Call(
        f"/api/v1/downtime/{STOP}", line="line-a"),
    "set_reason_api_v1_downtime__downtime_id__reason_put": Call(
        f"/api/v1/downtime/{STOP}/reason", body={"reason_code": "17", "note": "n"},
        line="line-a"),
    "patch_downtime_api_v1_downtime__downtime_id__patch": Call(
        f"/api/v1/downtime/{STOP}", body={"note": "patched"}, line="line-a"),
    "downtime_audit_api_v1_downtime__downtime_id__audit_get": Call(
        f"/api/v1/downtime/{STOP}/audit", line="line-a"),
    "downtime_pareto_api_v1_pareto_get": Call(
        "/api/v1/pareto", params={"line": "line-a", **WINDOW}, line="line-a"),
    "machine_reliability_api_v1_reliability_get": Call(
        "/api/v1/reliability", params={"line": "line-a", **WINDOW}, line="line-a"),
    "oee_history_api_v1_oee_get": Call(
        "/api/v1/oee", params={"line": "line-a", **WINDOW}, line="line-a"),
    "timeline_api_v1_lines__line__machines__machine__timeline_get": Call(
        f"{M}/timeline", params=WINDOW, line="line-a"),
    "signal_series_api_v1_lines__line__machines__machine__signals__signal__get": Call(
        f"{M}/signals/temperature", params=WINDOW, line="line-a"),
    "part_counts_api_v1_lines__line__machines__machine__counts_get": Call(
        f"{M}/counts", params=WINDOW, line="line-a"),
    "list_alerts_api_v1_alerts_get": Call("/api/v1/alerts"),
    "acknowledge_api_v1_alerts__fingerprint__ack_post": Call(_firing, line="line-a"),
    "list_silences_api_v1_silences_get": Call("/api/v1/silences"),
    "create_silence_api_v1_silences_post": Call(
        "/api/v1/silences", ok=201, body={"line": "line-a", "duration_s": 600, "comment": "x"},
        line="line-a"),
    "expire_silence_api_v1_silences__silence_id__delete": Call(_fresh_silence, line="line-a"),
}
PRINCIPALS: list[str | None] = [None, "bad-key", *KEY]


def expected(access: dict[str, Any] | None, who: str | None, call: Call) -> int:
    if access is None:
        return call.ok
    if who is None or who == "bad-key":
        return 401
    spec: KeySpec = KEY[who]
    if ROLES.index(spec.role) < ROLES.index(access["role"]):
        return 403
    if spec.kiosk and not access["kiosk"]:
        return 403
    if spec.lines is not None and (access["all_lines"] or (
            call.line is not None and call.line not in spec.lines)):
        return 403
    return call.ok


def _headers(who: str | None) -> dict[str, str]:
    if who == "bad-key":
        return {"Authorization": "Bearer not-a-key-of-this-plant-at-all"}
    return bearer(who) if who else {}


@pytest.fixture
async def matrix_api(tmp_path: Path):
    # The matrix sends a bad key to every route: lift the throttle so it sees 401, not 429.
    async with running_plant(tmp_path, auth_failures_per_minute=10_000) as (lm, clock), \
            serving_api(lm, clock) as a:
        yield a


async def test_role_matrix_generated_from_the_openapi_document(matrix_api: Api) -> None:
    doc = matrix_api.app.openapi()
    operations = [(path, method, op) for path, item in doc["paths"].items()
                  for method, op in item.items()]
    ids = {op["operationId"] for _, _, op in operations}
    assert ids == set(CALLS), f"routes without a matrix entry: {ids - set(CALLS)}; " \
        f"entries without a route: {set(CALLS) - ids}"
    wrong = []
    for _, method, op in operations:
        call, access = CALLS[op["operationId"]], op.get("x-linemon-access")
        for who in PRINCIPALS:
            path = call.path(matrix_api) if callable(call.path) else call.path
            response = await matrix_api.client.request(
                method.upper(), path, params=call.params, json=call.body, headers=_headers(who))
            want = expected(access, who, call)
            if response.status_code != want:
                wrong.append(f"{method.upper()} {path} as {who}: {response.status_code} "
                             f"(want {want}) {response.text[:120]}")
            documented = op["responses"].get(str(response.status_code), {}).get("content", {})
            if response.status_code >= 400 and "application/problem+json" in documented:
                assert response.headers["content-type"] == "application/problem+json"
    assert not wrong, "\n".join(wrong)


def test_every_write_route_needs_more_than_a_viewer(matrix_api: Api) -> None:
    doc = matrix_api.app.openapi()
    writes = [(path, method, op) for path, item in doc["paths"].items()
              for method, op in item.items() if method in WRITE_METHODS]
    assert len(writes) == 5  # coding (PUT, PATCH), ack, silence, end silence
    for path, method, op in writes:
        access = op["x-linemon-access"]
        assert ROLES.index(access["role"]) > ROLES.index("viewer"), f"{method} {path}"
        assert not access["kiosk"], f"{method} {path}"
        for status in ("401", "403"):
            assert status in op["responses"], f"{method} {path} does not document {status}"


async def test_scoped_key_sees_only_its_lines(api: Api) -> None:
    lines = await api.json("/api/v1/lines", "viewer-b")
    assert [ln["line"] for ln in lines] == ["line-b"]
    page = await api.json("/api/v1/downtime", "viewer-b", params=WINDOW)
    assert {d["line"] for d in page["items"]} == {"line-b"}
    assert (await api.get("/api/v1/downtime", "viewer-b",
                          params={"machine": "press-a1", **WINDOW})).status_code == 403
    assert await api.json("/api/v1/alerts", "viewer-b") == []
    reliability = await api.json("/api/v1/reliability", "viewer-b", params=WINDOW)
    assert [r["machine"] for r in reliability] == ["press-b1"]


async def test_scoped_keys_cannot_write_to_other_lines(api: Api) -> None:
    coded = await api.call("PUT", f"/api/v1/downtime/{STOP}/reason", "operator-b",
                           json={"reason_code": "17"})
    assert coded.status_code == 403 and "line-a" in coded.json()["detail"]
    silence = await api.call("POST", "/api/v1/silences", "supervisor-b",
                             json={"machine": "press-a1", "duration_s": 600, "comment": "x"})
    assert silence.status_code == 403
    rule_only = await api.call("POST", "/api/v1/silences", "supervisor-b",
                               json={"rule": "machine_stopped", "duration_s": 600,
                                     "comment": "would mute every line"})
    assert rule_only.status_code == 403
    own = await api.call("POST", "/api/v1/silences", "supervisor-b",
                         json={"line": "line-b", "duration_s": 600, "comment": "x"})
    assert own.status_code == 201


async def test_kiosk_key_opens_its_board_and_nothing_else(api: Api) -> None:
    assert (await api.get("/api/v1/lines/line-a", "kiosk-a")).status_code == 200
    assert (await api.get("/api/v1/lines/line-b", "kiosk-a")).status_code == 403
    history = await api.get("/api/v1/downtime", "kiosk-a", params={"line": "line-a"})
    assert history.status_code == 403 and "kiosk" in history.json()["detail"]
    # REST never takes the key from the URL (it would land in logs); only the WebSocket does.
    in_url = await api.get("/api/v1/lines/line-a", None, params={"key": KEY["kiosk-a"].key})
    assert in_url.status_code == 401


async def test_x_api_key_header_works_too(api: Api) -> None:
    response = await api.get("/api/v1/lines", None, headers={"X-API-Key": KEY["viewer"].key})
    assert response.status_code == 200


async def test_anonymous_viewer_only_when_configured(tmp_path: Path) -> None:
    async with running_plant(tmp_path, history=False, anonymous={"role": "viewer"}) as (lm, c), \
            serving_api(lm, c) as a:
        assert (await a.get("/api/v1/lines", None)).status_code == 200
        coded = await a.call("PUT", f"/api/v1/downtime/{STOP}/reason", None,
                             json={"reason_code": "17"})
        assert coded.status_code == 401


async def test_unknown_keys_are_throttled_per_client(tmp_path: Path) -> None:
    async with running_plant(tmp_path, history=False, auth_failures_per_minute=3) as (lm, c), \
            serving_api(lm, c, client_ip="10.0.0.7") as a:
        bad = {"Authorization": "Bearer guess-0000000000000000"}
        for _ in range(3):
            assert (await a.get("/api/v1/lines", None, headers=bad)).status_code == 401
        refused = await a.get("/api/v1/lines", None, headers=bad)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        # Even a right key from that client waits: a 200 would confirm a guess.
        assert (await a.get("/api/v1/lines", "viewer")).status_code == 429
        other = httpx.ASGITransport(app=a.app, client=("10.0.0.8", 1))
        async with httpx.AsyncClient(transport=other, base_url="http://l") as elsewhere:
            ok = await elsewhere.get("/api/v1/lines", headers=bearer("viewer"))
            assert ok.status_code == 200  # another client is not held back
            metrics = (await elsewhere.get("/metrics", headers=bearer("admin"))).text
        assert "linemon_api_auth_failures_total 3.0" in metrics
        assert "linemon_api_auth_throttled_total 2.0" in metrics


@pytest.mark.parametrize(("value", "says"), [
    ("changeme", "api.keys[0].key_env: LINEMON_TEST_KEY_VIEWER holds a placeholder"),
    ("short-key", "api.keys[0].key_env: LINEMON_TEST_KEY_VIEWER holds a placeholder"),
    ("", "api.keys[0].key_env: environment variable LINEMON_TEST_KEY_VIEWER is not set"),
    (KEYS[1].key, "api.keys[1].key_env: LINEMON_TEST_KEY_OPERATOR holds the same key as"),
])
def test_refuses_to_start_with_a_placeholder_missing_or_shared_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, says: str) -> None:
    config = plant_config(tmp_path)
    monkeypatch.setenv(KEYS[0].env, value)
    with pytest.raises(ConfigError) as err:
        create_app(Linemon(config))
    assert says in str(err.value)


async def test_cors_only_for_listed_origins(tmp_path: Path) -> None:
    allowed = "https://boards.plant.example"
    async with running_plant(tmp_path, history=False, cors_origins=[allowed]) as (lm, c), \
            serving_api(lm, c) as a:
        ok = await a.get("/api/v1/lines", "viewer", headers={"Origin": allowed})
        assert ok.headers["access-control-allow-origin"] == allowed
        other = await a.get("/api/v1/lines", "viewer", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = await a.call("OPTIONS", "/api/v1/silences", None, headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 400
