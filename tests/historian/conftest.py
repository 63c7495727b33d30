"""Fixtures for the historian tests: a real influxd, real SQLite files, historians on both.

influxd is the binary built by deploy/influxdb/build-influxd.sh (found through
$LINEMON_INFLUXD, .cache/influxd-path or ~/.cache/linemon/influxd-*/influxd). It is
started once per session on a free port with a temporary data directory, onboarded, and
given a token scoped to the test organization's buckets. If it is missing, every
influx test FAILS (never skips) and says how to build it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from historian_helpers import (
    MACHINE_LINES,
    NOW,
    TOKEN_ENV,
    influx_config,
    sqlite_config,
)

from collector.historian import Historian
from collector.historian.forwarder import Backoff


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influx)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_historian(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                   ) -> Callable[..., Historian]:
    """Build (not start) a Historian on the parametrized backend."""

    def build(**kw: Any) -> Historian:
        if backend_kind == "influxdb":
            server = request.getfixturevalue("influxd")
            config = influx_config(server, tmp_path)
            env = {TOKEN_ENV: server.token}
        else:
            config, env = sqlite_config(tmp_path), {}
        return Historian(config, machine_lines=MACHINE_LINES, env=env,
                         backoff=Backoff(0.05, 0.5), **kw)

    return build


@pytest.fixture
async def historian(make_historian: Callable[..., Historian]) -> AsyncIterator[Historian]:
    h = make_historian(clock=lambda: NOW)
    await h.start()
    try:
        yield h
    finally:
        await h.close(timeout_s=5)
