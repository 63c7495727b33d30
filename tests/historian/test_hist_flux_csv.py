"""The store parses influxd's annotated CSV itself: the same rows influxdb-client's records give."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from historian_helpers import BASE, TOKEN_ENV, influx_config
from influxdb_client.client.util.date_utils import get_date_helper
from test_hist_contract import WEIRD, seed

from collector.historian import Historian
from collector.historian.backends.flux_csv import FluxQueryError, parse_cells, parse_rows
from tests.support.influx import InfluxServer

parse_date = get_date_helper().parse_date

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


@contextlib.asynccontextmanager
async def answers(influxd: InfluxServer, tmp_path: Path
                  ) -> AsyncIterator[Callable[[str, bool], Awaitable[Any]]]:
    """A seeded store; yields `ask(query, raw)`: influxdb-client's tables, or the raw CSV."""
    config = influx_config(influxd, tmp_path)
    h = Historian(config, machine_lines={"press-1": "line-a", "press-2": "line-a",
                                         WEIRD: "line b"}, env={TOKEN_ENV: influxd.token})
    await h.start()
    try:
        await seed(h)
        params = {"p_bucket": config.backend.bucket,
                  "p_events": config.backend.downsampled_bucket,
                  "p_start": BASE - timedelta(hours=1), "p_stop": BASE + timedelta(hours=4),
                  "p_m": WEIRD}
        api = h.store.client.query_api()  # type: ignore[union-attr]

        async def ask(query: str, raw: bool) -> Any:
            read = api.query_raw if raw else api.query
            return await read(query, org=config.backend.org, params=params)

        yield ask
    finally:
        await h.close()


async def test_rows_are_the_clients_records(influxd: InfluxServer, tmp_path: Path) -> None:
    async with answers(influxd, tmp_path) as ask:
        for q in QUERIES:
            want = [rec.values for t in await ask(q, False) for rec in t.records]
            text = await ask(q, True)
            # influxd sends the results of several yields in either order, query by query
            assert want and by_result(parse_rows(text)) == by_result(want)


async def test_cells_are_the_rows_raw_strings(influxd: InfluxServer, tmp_path: Path) -> None:
    strings = ["result", "_measurement", "machine", "reason_text", "no such column"]
    async with answers(influxd, tmp_path) as ask:
        for q in QUERIES:
            text = await ask(q, True)
            rows = parse_rows(text)
            cells = parse_cells(text, ["_time", *strings])
            assert rows and len(cells) == len(rows)
            for row, (t, *rest) in zip(rows, cells, strict=True):
                assert rest == [row.get(c) or "" for c in strings]  # "": no value
                assert (parse_date(t) if t else None) == row.get("_time")


def by_result(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["result"], r["table"]))  # stable: rows keep order


def test_an_error_inside_the_answer_is_raised() -> None:
    text = ("#datatype,string,long\n#group,true,true\n#default,,\n,error,reference\n"
            ",\"runtime error: boom\",897\n")
    with pytest.raises(FluxQueryError, match="boom"):
        parse_rows(text)


def test_cells_with_and_without_quotes_in_the_answer() -> None:
    # two tables (other columns, another #default), an empty cell, a blank line between
    text = ("#datatype,string,long,dateTime:RFC3339,string,string\r\n"
            "#group,false,false,false,true,false\r\n#default,_result,,,,\r\n"
            ",result,table,_time,machine,reason_code\r\n"
            ",,0,2026-03-02T10:00:00Z,press-1,17\r\n,,0,2026-03-02T10:00:01.5Z,press-1,\r\n"
            "\r\n#datatype,string,long,dateTime:RFC3339,string\r\n"
            "#group,false,false,false,true\r\n#default,n,,,\r\n,result,table,_time,machine\r\n"
            ",,1,2026-03-02T10:00:02Z,press-2\r\n\r\n")
    quoted = text.replace(",press-2", ',"press-2"')  # the csv module's path
    for answer in (text, quoted):
        assert parse_cells(answer, ["result", "machine", "reason_code"]) == [
            ("_result", "press-1", "17"), ("_result", "press-1", ""), ("n", "press-2", "")]
        rows = parse_rows(answer)
        assert [(r["result"], r["machine"], r.get("reason_code")) for r in rows] == [
            ("_result", "press-1", "17"), ("_result", "press-1", None), ("n", "press-2", None)]
        assert rows[1]["_time"] == parse_date("2026-03-02T10:00:01.5Z")
