"""The store parses influxd's annotated CSV itself: the same rows influxdb-client's records give."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from historian_helpers import BASE, TOKEN_ENV, influx_config
from test_hist_contract import WEIRD, seed

from collector.historian import Historian
from collector.historian.backends.flux_csv import FluxQueryError, parse_rows
from tests.support.influx import InfluxServer

pytestmark = pytest.mark.influx

QUERIES = [  # tags, strings with commas/quotes/newlines, bools, ints, floats, nulls, tables
    'from(bucket: p_events) |> range(start: p_start, stop: p_stop) |> filter(fn: (r) => '
    'r._measurement == "downtime") |> pivot(rowKey: ["_time"], columnKey: ["_field"], '
    'valueColumn: "_value")',
    'from(bucket: p_events) |> range(start: p_start, stop: p_stop) |> filter(fn: (r) => '
    'r._measurement == "oee" or r._measurement == "parts" or r._measurement == "state")',
    'from(bucket: p_bucket) |> range(start: p_start, stop: p_stop)'
    ' |> filter(fn: (r) => r.machine == p_m) |> yield(name: "raw")\n'
    'from(bucket: p_bucket) |> range(start: p_start, stop: p_stop) |> count() |> yield(name: "n")',
]


async def test_rows_are_the_clients_records(influxd: InfluxServer, tmp_path: Path) -> None:
    config = influx_config(influxd, tmp_path)
    h = Historian(config, machine_lines={"press-1": "line-a", "press-2": "line-a",
                                         WEIRD: "line b"}, env={TOKEN_ENV: influxd.token})
    await h.start()
    try:
        await seed(h)
        store = h.store
        params = {"p_bucket": config.backend.bucket,
                  "p_events": config.backend.downsampled_bucket,
                  "p_start": BASE - timedelta(hours=1), "p_stop": BASE + timedelta(hours=4),
                  "p_m": WEIRD}
        for q in QUERIES:
            tables = await store.client.query_api().query(  # type: ignore[union-attr]
                q, org=config.backend.org, params=params)
            want = [rec.values for t in tables for rec in t.records]
            text = await store.client.query_api().query_raw(  # type: ignore[union-attr]
                q, org=config.backend.org, params=params)
            # influxd sends the results of several yields in either order, query by query
            assert want and by_result(parse_rows(text)) == by_result(want)
    finally:
        await h.close()


def by_result(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["result"], r["table"]))  # stable: rows keep order


def test_an_error_inside_the_answer_is_raised() -> None:
    text = ("#datatype,string,long\n#group,true,true\n#default,,\n,error,reference\n"
            ",\"runtime error: boom\",897\n")
    with pytest.raises(FluxQueryError, match="boom"):
        parse_rows(text)
