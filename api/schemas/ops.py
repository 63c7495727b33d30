"""Readiness as orchestrators and operators see it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SourceReadiness(BaseModel):
    connected: bool


class HistorianReadiness(BaseModel):
    reachable: bool = Field(description="the store accepted the last write (no outage alarm)")
    alarm: str | None
    backlog: int = Field(description="records waiting in the spool")
    backlog_bytes: int
    quarantined: int


class BusReadiness(BaseModel):
    connected: bool = Field(description="connected to the broker engines and API processes share")


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ready": False, "sources": {"plc-line1": {"connected": True},
                                    "gateway-line1": {"connected": False}},
        "historian": {"reachable": True, "alarm": None, "backlog": 12, "backlog_bytes": 2048,
                      "quarantined": 0},
    }]})

    ready: bool
    sources: dict[str, SourceReadiness]
    historian: HistorianReadiness
    bus: BusReadiness | None = Field(
        None, description="scaled out (`--role engine|api`): the shared broker; else null")
