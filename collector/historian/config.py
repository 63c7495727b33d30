"""Historian settings, composed by the plant config under the `historian:` key.

SQLite is the default so the demo needs nothing installed; InfluxDB is chosen with
`backend: {kind: influxdb, ...}`. Secrets are never in the file: `token_env` names
the environment variable that holds the InfluxDB token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SpoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path = Path("linemon-data/spool.sqlite")
    # Payload bytes (line protocol + a per-record overhead estimate), not the file size.
    max_bytes: int = Field(default=1_073_741_824, gt=0)
    replay_max_points_per_s: int = Field(default=50_000, gt=0)


class SqliteBackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sqlite"] = "sqlite"
    path: Path = Path("linemon-data/history.sqlite")
    retention_days: int = Field(default=400, gt=0)


class InfluxBackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["influxdb"]
    url: str
    org: str
    bucket: str = "linemon"  # raw samples
    downsampled_bucket: str = "linemon_1m"  # events and 1-minute sample aggregates
    token_env: str  # name of the env var holding the token, never the token
    retention_days: int = Field(default=30, gt=0)
    downsampled_retention_days: int = Field(default=730, gt=0)
    batch_size: int = Field(default=5000, gt=0)
    flush_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)


class HistorianConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: SqliteBackendConfig | InfluxBackendConfig = Field(
        default_factory=SqliteBackendConfig, discriminator="kind"
    )
    spool: SpoolConfig = SpoolConfig()
