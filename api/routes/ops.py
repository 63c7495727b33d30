"""Operations: liveness, readiness and Prometheus metrics (API and engine processes alike).

/healthz and /readyz are open (orchestrators probe them without keys) and say nothing
beyond up/down, source names and spool depth: no error texts, no addresses. /metrics
names every machine, so it needs a key that sees every line.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import PlantViewer, Principal
from api.openapi import AccessRoute
from api.schemas import Readiness
from api.schemas.ops import BusReadiness, HistorianReadiness, SourceReadiness

router = APIRouter(tags=["operations"], route_class=AccessRoute)
health_router = APIRouter(tags=["operations"], route_class=AccessRoute)  # open
REACHABILITY_ALARMS = {"outage", "auth"}


@health_router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "not ready; see which part"}},
            summary="Sources connected, historian reachable, spool depth")
async def readyz(request: Request) -> JSONResponse:
    lm = request.app.state.linemon
    health = lm.historian.health()
    alarm = health.get("alarm")
    historian = HistorianReadiness(
        reachable=alarm not in REACHABILITY_ALARMS, alarm=alarm,
        backlog=int(health.get("backlog", 0)), backlog_bytes=int(health.get("backlog_bytes", 0)),
        quarantined=int(health.get("quarantined", 0)))
    sources = {s.name: SourceReadiness(connected=s.stats.connected) for s in lm.sources}
    bus = request.app.state.bus
    bus_ready = BusReadiness(connected=bus.stats.connected) if bus is not None else None
    ready = (all(s.connected for s in sources.values()) and bool(health.get("ok", True))
             and (bus_ready is None or bus_ready.connected))
    body = Readiness(ready=ready, sources=sources, historian=historian, bus=bus_ready)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text format",
          "content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics: sources, spool and forwarder, engine, API")
async def metrics(request: Request, _: Principal = PlantViewer) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)

