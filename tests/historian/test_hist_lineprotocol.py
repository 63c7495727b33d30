"""Line protocol: what linemon writes is what influxd (and our parser) reads back."""

from __future__ import annotations

import json
import math
import re
import uuid

import pytest
from historian_helpers import InfluxServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.historian.lineprotocol import (
    LineProtocolError,
    encode_point,
    escape_tag,
    format_field,
    normalize_newlines,
    parse_line,
)

# Any text influxd can hold in a tag: no line breaks, no backslash before , = space or at
# the end (influxd does not unescape "\\", so those cannot be written; they are rejected).
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
tag_values = _text.filter(lambda s: "\n" not in s and "\r" not in s
                          and not re.search(r"\\([,= ]|$)", s))
field_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
)
timestamps = st.integers(-(2**62), 2**62)


@given(tags=st.dictionaries(tag_values, tag_values, max_size=4),
       fields=st.dictionaries(tag_values, field_values, min_size=1, max_size=4).filter(
           lambda f: any(v != "" for v in f.values())),
       measurement=tag_values.filter(lambda s: not s.startswith("#")), ts=timestamps)
def test_round_trip(measurement: str, tags: dict[str, str], fields: dict, ts: int) -> None:
    line = encode_point(measurement, tags, fields, ts)
    assert "\n" not in line.split('"')[0]  # a line break outside strings would split it
    point = parse_line(line)
    assert point.measurement == measurement
    assert point.tags == tags
    assert point.ts_ns == ts
    fields = {k: v for k, v in fields.items() if v != ""}  # empty strings are left out
    assert point.fields.keys() == fields.keys()
    for key, value in fields.items():
        got = point.fields[key]
        if isinstance(value, str):
            value = normalize_newlines(value)
        assert type(got) is type(value)
        assert got == value or (isinstance(value, float) and math.isclose(got, value))


@pytest.mark.parametrize(("value", "escaped"), [
    ("press 1", "press\\ 1"),
    ("a,b=c", "a\\,b\\=c"),
    ("C:\\plc\\x", "C:\\plc\\x"),  # a backslash before an ordinary char stays as it is
    ("Straße-ü-压机", "Straße-ü-压机"),
])
def test_tag_escaping(value: str, escaped: str) -> None:
    assert escape_tag(value) == escaped


@pytest.mark.parametrize("value", ["two\nlines", "cr\r", "ends\\", "a\\,b", "a\\ b"])
def test_unrepresentable_tags_are_rejected(value: str) -> None:
    with pytest.raises(LineProtocolError):
        encode_point("sample", {"machine": value}, {"value": 1.0}, 0)


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (False, "false"), (3, "3i"), (-7, "-7i"), (1.5, "1.5"), (1e16, "1e+16"),
    ('say "hi" \\ bye', '"say \\"hi\\" \\\\ bye"'),
])
def test_field_formatting(value: object, text: str) -> None:
    assert format_field(value) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**63, None, b"x"])
def test_bad_fields_are_rejected(value: object) -> None:
    with pytest.raises(LineProtocolError):
        format_field(value)  # type: ignore[arg-type]


def test_empty_tags_are_left_out_and_tags_sorted() -> None:
    line = encode_point("sample", {"z": "1", "line": None, "a": "", "m": "x"}, {"v": 1}, 5)
    assert line == "sample,m=x,z=1 v=1i 5"


@pytest.mark.parametrize("line", [
    "m", "m f=1 x", "m,t f=1 1", "m f=nan 1", "m f=1_0 1", 'm f="open 1', "m f= 1",
])
def test_parser_rejects_bad_lines(line: str) -> None:
    with pytest.raises(LineProtocolError):
        parse_line(line)


@pytest.fixture(scope="module")
def lp_bucket(influxd: InfluxServer) -> tuple[InfluxServer, str]:
    name = f"lp-{uuid.uuid4().hex[:8]}"
    influxd.api("POST", "/api/v2/buckets", {"orgID": influxd.org_id, "name": name})
    return influxd, name


@pytest.mark.influx
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.tuples(tag_values, st.text(st.characters(blacklist_categories=("Cs",)),
                                                    max_size=30)), min_size=1, max_size=20))
def test_influxd_reads_what_we_write(lp_bucket: tuple[InfluxServer, str],
                                     items: list[tuple[str, str]]) -> None:
    server, bucket = lp_bucket
    measurement = f"lp {uuid.uuid4().hex[:8]},x"  # escaped measurement too
    lines = [encode_point(measurement, {"k": tag}, {"s": text, "n": i}, 1_000_000_000 + i)
             for i, (tag, text) in enumerate(items)]
    server.write_lines(bucket, lines)
    flux = (f'from(bucket: "{bucket}") |> range(start: 0) '
            f'|> filter(fn: (r) => r._measurement == {json.dumps(measurement)}) '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
    rows = server.query_csv(flux)
    # Flux's CSV output writes LF inside strings as CRLF (the store readers undo it too).
    got = sorted((int(r["n"]), r["k"], r.get("s", "").replace("\r\n", "\n")) for r in rows)
    # influxd keeps the last of identical points (same tag and time): so do we expect.
    assert got == sorted((i, tag, normalize_newlines(text)) for i, (tag, text) in enumerate(items))
