"""Helpers shared by the historian tests: the influxd process, configs, polling."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.historian import Historian
from collector.historian.config import (
    HistorianConfig,
    InfluxBackendConfig,
    SpoolConfig,
    SqliteBackendConfig,
)
from linemon.model import Sample
from tests.support.influx import (  # noqa: F401 - re-exported for the historian tests
    BUILD_SCRIPT,
    ORG,
    REPO,
    TOKEN_ENV,
    InfluxServer,
    find_influxd,
    wait_until,
)
from tests.support.plants import eventually
from tests.support.services import free_port  # noqa: F401


def influx_config(server: InfluxServer, tmp: Path, **overrides: Any) -> HistorianConfig:
    suffix = uuid.uuid4().hex[:8]  # every test its own buckets
    backend = {"kind": "influxdb", "url": server.url, "org": ORG, "token_env": TOKEN_ENV,
               "bucket": f"raw-{suffix}", "downsampled_bucket": f"long-{suffix}",
               "flush_interval_s": 0.1, "timeout_s": 5.0} | overrides
    return HistorianConfig(backend=InfluxBackendConfig(**backend),
                           spool=SpoolConfig(path=tmp / "spool.sqlite"))


def sqlite_config(tmp: Path) -> HistorianConfig:
    return HistorianConfig(backend=SqliteBackendConfig(path=tmp / "history.sqlite"),
                           spool=SpoolConfig(path=tmp / "spool.sqlite"))


# Contract data sits in the recent past: InfluxDB refuses points older than a bucket's
# retention. Queries use this fixed "now" so open stops have a known duration.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
NOW = BASE + timedelta(hours=2)
MACHINE_LINES = {"press-1": "line-a", "press-2": "line-a", "weld 1,=\\x": "line b"}


# The `seq` samples of the durability tests: press-1, one every 500 µs from an hour ago,
# the value its sequence number, so that a lost or doubled point shows.
SEQ_T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def seq_sample(seq: int) -> Sample:
    return Sample("press-1", "seq", seq, SEQ_T0 + timedelta(microseconds=500 * seq), SEQ_T0)


def stored_seqs(h: Historian, server: InfluxServer | None = None) -> list[int]:
    """Every stored `seq` value, read straight from the store (not via the code under test)."""
    cfg = h.config.backend
    if cfg.kind == "sqlite":
        with sqlite3.connect(cfg.path) as conn:
            rows = conn.execute("SELECT value FROM sample WHERE signal = 'seq'").fetchall()
        return [int(v) for (v,) in rows]
    assert server is not None
    flux = (f'from(bucket: "{cfg.bucket}") |> range(start: 0) |> filter(fn: (r) => '
            'r._measurement == "sample" and r.signal == "seq" and r._field == "value") '
            '|> keep(columns: ["_value"])')
    return [int(float(r["_value"])) for r in server.query_csv(flux)]


async def wait_for(cond: Callable[[], Any], within_s: float, what: str) -> None:
    """Poll an (async or sync) condition until it is true; no fixed sleeps."""
    await eventually(cond, within_s, what)
