"""InfluxDB specifics on a real influxd: buckets and retention, auth alarms, downsampling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from historian_helpers import MACHINE_LINES, TOKEN_ENV, InfluxServer, influx_config, wait_for

from collector.historian import Historian
from collector.historian.backends.downsample import Downsampler
from collector.historian.forwarder import Backoff
from collector.historian.schema import to_ns
from linemon.model import MachineState, Quality, Sample, StateChanged

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


async def test_a_minute_merges_every_quality_and_source_of_a_signal(
        influxd: InfluxServer, tmp_path: Path) -> None:
    """A signal's points sit in one InfluxDB series per quality and source tag; its minute
    takes all of them but the bad ones, and its last is the latest point of any of them."""
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        kinds = [(Quality.GOOD, "plc"), (Quality.UNCERTAIN, "plc"), (Quality.GOOD, "gateway"),
                 (Quality.BAD, "plc")]
        samples = [Sample("press-1", "temp", float(k * 5 % 17), T + timedelta(seconds=4 * k), T,
                          *kinds[k % 4]) for k in range(30)]  # two minutes, 4 series
        samples.append(Sample("press-1", "temp", 99.0, T + timedelta(seconds=119), T,
                              Quality.BAD, "plc"))  # the minute's latest and largest: bad
        await h.write_samples(samples)
        assert await h.flush(10)
        assert h._downsampler is not None
        await h._downsampler.run_once()
        minutes = h.store._series_from_minutes  # type: ignore[union-attr]
        got = {agg: [(p.ts, p.value) for p in await minutes(
            "press-1", "temp", T, T + timedelta(minutes=3), 60_000_000_000, agg)]
            for agg in ("mean", "min", "max", "last")}
        usable = [s for s in samples if s.quality != Quality.BAD]
        want: dict[str, list[tuple[datetime, float]]] = {a: [] for a in got}
        for minute in range(2):
            at = T + timedelta(minutes=minute)
            inside = sorted((s for s in usable if at <= s.source_ts < at + timedelta(minutes=1)),
                            key=lambda s: s.source_ts)
            values = [float(s.value) for s in inside]  # type: ignore[arg-type]
            want["mean"].append((at, sum(values) / len(values)))
            want["min"].append((at, min(values)))
            want["max"].append((at, max(values)))
            want["last"].append((at, values[-1]))
        assert {(s.quality, s.source) for s in usable  # minute 1 has 3 series to merge
                if s.source_ts >= T + timedelta(minutes=1)} == set(kinds[:3])
        for agg in got:
            assert [ts for ts, _ in got[agg]] == [ts for ts, _ in want[agg]], agg
            assert [v for _, v in got[agg]] == pytest.approx([v for _, v in want[agg]]), agg
    finally:
        await h.close()


def third_slice_fails_once(ds: Downsampler) -> list[tuple[int, int]]:
    """Records the slices `ds` aggregates; the third one raises a TimeoutError."""
    slices: list[tuple[int, int]] = []
    aggregate = ds.aggregate

    async def third_fails_once(start_ns: int, stop_ns: int) -> list[str]:
        slices.append((start_ns, stop_ns))
        if len(slices) == 3:
            raise TimeoutError("influxd took too long")
        return await aggregate(start_ns, stop_ns)

    ds.aggregate = third_fails_once  # type: ignore[method-assign]
    return slices


async def test_a_failed_pass_resumes_at_the_slice_that_failed(
        influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        ds = h._downsampler
        assert ds is not None
        slices = third_slice_fails_once(ds)
        await h.write_samples([Sample("press-1", "temp", 2.0, T + timedelta(seconds=10 * k), T)
                               for k in range(12)])
        assert await h.flush(10)
        with pytest.raises(TimeoutError):
            await ds.run_once()  # the first pass, over the last hour, fails at its 3rd slice
        failed = slices[2]
        await ds.run_once()
        assert slices[3] == failed  # not the hour again from its first slice
        assert slices[-1][1] > to_ns(T + timedelta(minutes=2))
        maxima = await h.store._series_from_minutes(  # type: ignore[union-attr]
            "press-1", "temp", T, T + timedelta(minutes=3), 60_000_000_000, "max")
        assert [p.value for p in maxima] == [2.0, 2.0]
    finally:
        await h.close()


async def test_a_late_sample_before_the_resume_point_is_counted(
        influxd: InfluxServer, tmp_path: Path) -> None:
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        ds = h._downsampler
        assert ds is not None
        slices = third_slice_fails_once(ds)
        with pytest.raises(TimeoutError):
            await ds.run_once()
        early = slices[0][0] + 2 * 60_000_000_000  # inside the first slice, already done
        assert early < slices[2][0]
        at = datetime.fromtimestamp(early / 1e9, UTC) + timedelta(seconds=5)
        await h.write_samples([Sample("press-1", "temp", 7.0, at, T)])
        assert await h.flush(10)
        await ds.run_once()
        assert slices[3][0] == early  # from the late minute, before where the pass failed
        maxima = await h.store._series_from_minutes(  # type: ignore[union-attr]
            "press-1", "temp", at - timedelta(minutes=1), at + timedelta(minutes=1),
            60_000_000_000, "max")
        assert [p.value for p in maxima] == [7.0]
    finally:
        await h.close()


async def test_a_minute_not_yet_whole_at_one_pass_is_done_by_the_next(
        influxd: InfluxServer, tmp_path: Path) -> None:
    """Even with nothing stored between the two passes (the line went quiet)."""
    h = historian(influxd, tmp_path)
    await h.start()
    try:
        ds = h._downsampler
        assert ds is not None
        await h.write_samples([Sample("press-1", "temp", 3.0, T + timedelta(seconds=10 * k), T)
                               for k in range(24)])  # minutes T .. T+3
        assert await h.flush(10)
        ds._clock = lambda: T + timedelta(minutes=3, seconds=30)  # T+3 is not whole yet
        await ds.run_once()
        ds._clock = lambda: T + timedelta(minutes=4, seconds=30)
        await ds.run_once()
        maxima = await h.store._series_from_minutes(  # type: ignore[union-attr]
            "press-1", "temp", T, T + timedelta(minutes=5), 60_000_000_000, "max")
        assert [p.ts for p in maxima] == [T + timedelta(minutes=m) for m in range(4)]
    finally:
        await h.close()
