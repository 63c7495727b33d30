"""Operations and the contract: health, readiness, metrics, limits, problem JSON, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

import api.schemas as schemas
from linemon.model import Quality, Sample
from tests.api.conftest import Api, running_plant, serving_api
from tests.api.plant import NOW
from tests.support.plants import eventually

MISSING_STOP = "/api/v1/downtime/press-a1:2026-03-02T06:10:00+00:00"


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.get("/metrics", "viewer")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples_of(response.text)


async def test_healthz_and_readyz(api: Api) -> None:
    assert (await api.get("/healthz", None)).json() == {"status": "ok"}
    not_ready = await api.get("/readyz", None)
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert body["sources"] == {"gw": {"connected": False}}
    assert body["historian"]["reachable"] is True and body["historian"]["backlog"] == 0
    api.lm.sources[0].stats.connected = True
    ready = await api.get("/readyz", None)
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_metrics_read_the_live_counters_at_scrape_time(api: Api) -> None:
    first = await scrape(api)
    assert first[("linemon_spool_appended_total", ())] > 0
    assert first[("linemon_historian_written_total", ())] > 0
    assert first[("linemon_historian_write_seconds_total", ())] > 0
    down = ("linemon_machine_state", (("line", "line-a"), ("machine", "weld-a2"),
                                      ("state", "down")))
    assert first[down] == 1.0
    assert first[("linemon_alerts", (("severity", "critical"), ("state", "firing")))] == 1.0
    api.lm.sources[0].stats.received = 1234  # no copy in between: the scrape reads it
    at = NOW + timedelta(seconds=1)
    api.clock.now = at
    await api.lm.ingest([Sample("weld-a2", "state", 1, at, at, Quality.GOOD, "gw")])

    async def counted() -> Any:
        later = await scrape(api)
        return later if later.get(("linemon_engine_events_total",
                                   (("kind", "state_changed"),))) else None

    later = await eventually(counted, 5, "the state change in the engine event counter")
    assert later[("linemon_source_received_total", (("source", "gw"),))] == 1234.0
    assert later[down] == 0.0


async def test_metrics_need_a_key_that_sees_every_line(api: Api) -> None:
    assert (await api.get("/metrics", None)).status_code == 401
    assert (await api.get("/metrics", "viewer-b")).status_code == 403


async def test_two_apps_in_one_process_keep_their_own_metrics(api: Api, tmp_path: Path) -> None:
    async with running_plant(tmp_path / "second", history=False) as (lm, clock), \
            serving_api(lm, clock) as other:
        mine, theirs = await scrape(api), await scrape(other)
        assert mine[("linemon_spool_appended_total", ())] > 0
        assert theirs[("linemon_spool_appended_total", ())] == 0


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/nowhere", 404),
    ("DELETE", "/api/v1/lines", 405),
    ("GET", "/api/v1/downtime?limit=0", 422),
    ("GET", "/api/v1/downtime?order=sideways", 422),
])
async def test_errors_are_problem_json(shared_api: Api, method: str, path: str,
                                       status: int) -> None:
    response = await shared_api.call(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == status


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("params", "says"), [
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "at most 31 days"),
    ({"start": "2026-03-02T06:00:00"}, "needs a UTC offset"),
    ({"start": "2026-03-02T07:00:00Z", "end": "2026-03-02T06:00:00Z"}, "after start"),
    ({"start": "1900-01-01T00:00:00Z", "end": "1900-01-02T00:00:00Z"}, "between 1970 and 2200"),
    ({"end": "9999-12-31T23:59:59-23:00"}, "between 1970 and 2200"),
])
async def test_time_range_limits(shared_api: Api, params: dict[str, str], says: str) -> None:
    for path in ("/api/v1/downtime", "/api/v1/pareto", "/api/v1/oee?line=line-a"):
        response = await shared_api.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert says in response.json()["detail"]


async def chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 8192
        sent += 8192


@pytest.mark.asyncio(loop_scope="module")
async def test_request_body_limit(shared_api: Api) -> None:
    big = {"reason_code": "17", "note": "x" * 70_000}
    declared = await shared_api.call("PUT", f"{MISSING_STOP}/reason", json=big)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    streamed = await shared_api.call("PUT", f"{MISSING_STOP}/reason", content=chunks(100_000),
                                     headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413  # chunked, no Content-Length: counted as it arrives
    small = await shared_api.call("PUT", f"{MISSING_STOP}/reason", json={"reason_code": "17"})
    assert small.status_code == 404  # under the limit it reaches the route


@pytest.mark.asyncio(loop_scope="module")
async def test_openapi_document_is_complete(shared_api: Api) -> None:
    doc = (await shared_api.get("/openapi.json", None)).json()
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("tags"), where
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert ok and all("content" in op["responses"][s] for s in ok), where
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and not path.startswith("/readyz"):
                    assert list(answer["content"]) == ["application/problem+json"], \
                        f"{where} {status}"
    assert "HTTPValidationError" not in doc["components"]["schemas"]


MODELS = [m for m in (getattr(schemas, n) for n in schemas.__all__)
          if isinstance(m, type) and issubclass(m, BaseModel)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_schema_examples_are_valid(model: type[BaseModel]) -> None:
    extra = model.model_config.get("json_schema_extra") or {}
    examples = extra.get("examples", []) if isinstance(extra, dict) else []
    assert examples, f"{model.__name__} has no example for the OpenAPI document"
    for example in examples:
        model.model_validate(example)


async def test_health_reports_the_notifications_when_they_are_configured(
        tmp_path: Path) -> None:
    from linemon.app import Linemon
    from tests.api.plant import BASE, PlantClock, plant_config

    quiet = Linemon(plant_config(tmp_path / "a"), PlantClock(BASE))
    assert quiet.notifier is None and "notifications" not in quiet.health()
    notifying = plant_config(tmp_path / "b", notifications={
        "outbox": {"path": str(tmp_path / "b" / "outbox.sqlite")},
        "channels": [{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9/hook"}],
        "routes": [{"notify": [{"channel": "hook"}]}]})
    lm = Linemon(notifying, PlantClock(BASE))
    assert lm.notifier is not None
    assert lm.health()["notifications"] == {
        "delivered": 0, "retried": 0, "failed": 0, "in_flight": 0, "incidents": 0}
