"""Operations: liveness and readiness for orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Sources connected and historian reachable")
def readyz(request: Request) -> JSONResponse:
    health = request.app.state.linemon.health()
    sources_ok = all(s["connected"] for s in health["sources"].values())
    historian_ok = bool(health["historian"].get("ok", True))
    ready = sources_ok and historian_ok
    return JSONResponse({"ready": ready, **health}, status_code=200 if ready else 503)
