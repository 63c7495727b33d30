"""InfluxDB specifics on a real influxd: buckets and retention, auth alarms, downsampling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from historian_helpers import MACHINE_LINES, TOKEN_ENV, InfluxServer, influx_config, wait_for

from collector.historian import Historian
from collector.historian.forwarder import Backoff
from collector.historian.schema import to_ns
from linemon.model import MachineState, Sample, StateChanged

NOW = datetime.now(UTC)
T = NOW.replace(second=0, microsecond=0) - timedelta(minutes=20)

pytestmark = pytest.mark.influx



def historian(server: InfluxServer, tmp: Path, token: str | None = None, **cfg: object
              ) -> Historian:
    return Historian(influx_config(server, tmp, **cfg), machine_lines=MACHINE_LINES,
                     env={TOKEN_ENV: token or server.token}, backoff=Backoff(0.05, 0.5))


async def test_buckets_are_created_with_retention(influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path, retention_days=7, downsampled_retention_days=400)
    await h.start()
    await h.close()
    cfg = h.config.backend
    for name, days in ((cfg.bucket, 7), (cfg.downsampled_bucket, 400)):
        found = influxd.api("GET", f"/api/v2/buckets?name={name}&orgID={influxd.org_id}")
        rules = found["buckets"][0]["retentionRules"]
        assert [r["everySeconds"] for r in rules] == [days * 86_400]


async def test_a_wrong_token_keeps_the_data_and_raises_the_alarm(
        influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path, token="not-the-token")
    await h.start()
    try:
        await h.write_samples([Sample("press-1", "temp", 1.0, T, T)])
        await h.write_events([StateChanged("line-a", "press-1", T, MachineState.DOWN,
                                           MachineState.RUNNING)])
        await wait_for(lambda: h.health()["alarm"] == "auth", 10, "the auth alarm")
        health = h.health()
        assert not health["ok"] and "401" in health["last_error"]
        assert health["backlog"] == 2  # nothing dropped
    finally:
        await h.close(timeout_s=0.5)


async def test_a_token_that_may_not_create_buckets_and_a_missing_bucket(
        influxd: InfluxServer, tmp_path: Path) -> None:
    bucket = influxd.api("POST", "/api/v2/buckets", {"orgID": influxd.org_id,
                                                     "name": f"only-{tmp_path.name[-8:]}"})
    perms = [{"action": a, "resource": {"type": "buckets", "id": bucket["id"],
                                        "orgID": influxd.org_id}} for a in ("read", "write")]
    token = influxd.api("POST", "/api/v2/authorizations", {
        "orgID": influxd.org_id, "permissions": perms})["token"]
    h = historian(influxd, tmp_path, token=token, bucket=bucket["name"],
                  downsampled_bucket="does-not-exist")
    await h.start()  # cannot check or create buckets: starts anyway
    try:
        await h.write_samples([Sample("press-1", "temp", 1.0, T, T)])
        assert await h.flush(10)  # samples go to the bucket the token may write
        await h.write_events([StateChanged("line-a", "press-1", T, MachineState.DOWN,
                                           MachineState.RUNNING)])
        await wait_for(lambda: h.health()["alarm"] == "auth", 10, "the missing-bucket alarm")
        assert h.health()["backlog"] == 1
    finally:
        await h.close(timeout_s=0.5)


async def test_minute_aggregates_answer_like_the_raw_data(
        influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        samples = [Sample("press-1", "temp", float((k * 7) % 23), T + timedelta(seconds=7 * k), T)
                   for k in range(60)]  # 7 minutes of uneven values
        await h.write_samples(samples)
        assert await h.flush(10)
        assert h._downsampler is not None
        await h._downsampler.run_once()
        end = T + timedelta(minutes=8)
        for every in (60, 120):
            for agg in ("mean", "min", "max", "last"):
                raw = await h.query.signal_series("press-1", "temp", T, end, every, agg)
                minutes = await h.store._series_from_minutes(  # type: ignore[union-attr]
                    "press-1", "temp", T, end, every * 1_000_000_000, agg)
                assert [p.ts for p in minutes] == [p.ts for p in raw]
                assert [p.value for p in minutes] == pytest.approx([p.value for p in raw])
        assert h.health()["downsampling"]["last_error"] is None
    finally:
        await h.close()


async def test_a_late_sample_is_counted_without_recomputing_the_hour(
        influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        ds = h._downsampler
        assert ds is not None
        slices: list[tuple[int, int]] = []
        aggregate = ds.aggregate

        async def recorded(start_ns: int, stop_ns: int) -> list[str]:
            slices.append((start_ns, stop_ns))
            return await aggregate(start_ns, stop_ns)

        ds.aggregate = recorded  # type: ignore[method-assign]
        await h.write_samples([Sample("press-1", "temp", 1.0, T + timedelta(seconds=10 * k), T)
                               for k in range(36)])  # six minutes of 1.0
        assert await h.flush(10)
        await ds.run_once()  # the first pass after a start: the whole last hour
        assert slices[0][0] <= to_ns(T) - 30 * 60 * 1_000_000_000
        done = len(slices)

        late = Sample("press-1", "temp", 9.0, T + timedelta(minutes=2, seconds=5), T)
        await h.write_samples([late])
        assert await h.flush(10)
        await ds.run_once()
        assert slices[done][0] == to_ns(T + timedelta(minutes=2))  # from the late minute on
        maxima = await h.store._series_from_minutes(  # type: ignore[union-attr]
            "press-1", "temp", T, T + timedelta(minutes=8), 60_000_000_000, "max")
        assert [p.value for p in maxima] == [1.0, 1.0, 9.0, 1.0, 1.0, 1.0]

        watermark = slices[-1][1]
        done = len(slices)
        await ds.run_once()  # nothing stored since: only minutes past the watermark
        assert all(start >= watermark for start, _ in slices[done:])
        assert h.health()["downsampling"]["last_error"] is None
    finally:
        await h.close()
