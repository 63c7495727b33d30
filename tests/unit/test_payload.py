"""JSON payloads: parse_json takes orjson's fast path and falls back to the standard parser
(a payload reads exactly as json.loads reads it, types included), and decode's shortcuts
give what the long way round gives."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.sources.payload import (
    FieldBinding,
    Rejected,
    coerce,
    decode,
    parse_json,
    parse_ts,
    pick,
)
from linemon.model import Sample

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


def typed(x: object) -> object:
    """`x` with the type of every value in it: 1, 1.0 and True are not the same reading."""
    if isinstance(x, dict):
        return {k: typed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [typed(v) for v in x]
    return (type(x).__name__, x)


@given(JSON)
def test_any_document_reads_as_the_standard_parser_reads_it(document: object) -> None:
    payload = json.dumps(document).encode()
    assert typed(parse_json(payload)) == typed(json.loads(payload))


@pytest.mark.parametrize("payload", [
    b'{"value": 12.5, "ts": 1795263349.575123, "seq": 123}',
    b'{"value": "\\ud800"}',  # a lone surrogate escape
    b'{"value": 1, "value": 2}',  # the last one wins, in both
    b'\xef\xbb\xbf{"value": 1}',  # a byte-order mark
    b'{"value": 18446744073709551616}',  # 2**64: orjson would read a float
    b'{"value": -9223372036854775809, "serial": 89441000300000000001}',
    b'{"value": 0.12345678901234567890123}',  # many digits, not an integer
    b'{"value": "89441000300000000001"}',  # in a string
    b'{"m": {"serials": [1, {"s": 18446744073709551617}]}, "value": 1.5}',  # nested
    b'[' * 300 + b'-9223372036854775809' + b']' * 300,  # deep inside
    b'{"value": 1e19, "ts": -1e300}',  # floats that large read the same either way
])
def test_the_edge_cases_read_as_the_standard_parser_reads_them(payload: bytes) -> None:
    assert typed(parse_json(payload)) == typed(json.loads(payload))


def test_nan_reads_as_nan_as_before() -> None:
    document = parse_json(b'{"value": NaN}')
    assert isinstance(document, dict) and math.isnan(document["value"])


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"value": 1,', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"value": "\xff\xfe"}', "invalid_utf8"),
    (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # deeper than either parser goes
])
def test_bad_payloads_are_refused_for_their_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse_json(payload)
    assert refused.value.reason == reason


# --- decode's shortcuts (a one-key path, the coercer picked per binding) ---------------------

RECEIVED = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.sampled_from(["12", "1.5", "true", "x", "2026-11-21T11:59:00+00:00",
                              "2026-11-21T11:59:00"]))
DOCUMENTS = st.dictionaries(st.sampled_from(["value", "ts", "data"]),
                            SCALARS | st.dictionaries(st.sampled_from(["value", "ts"]), SCALARS),
                            max_size=3)


def _the_long_way(document: object, bindings: list[FieldBinding]) -> list[Sample]:
    """decode without its shortcuts: pick, coerce and parse_ts for every field."""
    if not isinstance(document, dict):
        raise Rejected("not_an_object", type(document).__name__)
    samples = []
    for binding in bindings:
        try:
            raw = pick(document, binding.field)
        except Rejected as err:
            if len(bindings) > 1 and err.reason == "missing_field":
                continue
            raise
        value = coerce(raw, binding.type)
        ts = RECEIVED
        if binding.ts_field is not None:
            try:
                ts = parse_ts(pick(document, binding.ts_field), RECEIVED)
            except Rejected as err:
                if err.reason != "missing_field":
                    raise
        samples.append(Sample(binding.machine, binding.signal, value, ts, RECEIVED, source="gw"))
    if not samples:
        raise Rejected("missing_field", "no configured field present")
    return samples


def _outcome(fn: Any) -> object:
    try:
        return [(s.signal, type(s.value).__name__, s.value if s.value == s.value else "nan",
                 s.source_ts) for s in fn()]
    except Rejected as err:
        return ("rejected", err.reason)


@settings(max_examples=300)
@given(DOCUMENTS, st.sampled_from(["auto", "int", "float", "bool", "str"]),
       st.sampled_from([("value",), ("data", "value")]),
       st.sampled_from([None, ("ts",), ("data", "ts")]), st.booleans())
def test_decode_gives_what_the_long_way_gives(document: dict[str, Any], wanted: str,
                                               path: tuple[str, ...],
                                               ts_path: tuple[str, ...] | None,
                                               two: bool) -> None:
    bindings = [FieldBinding("m-1", "a", path, ts_path, wanted)]
    if two:
        bindings.append(FieldBinding("m-1", "b", ("data", "ts"), ("ts",), "auto"))
    assert _outcome(lambda: decode(document, bindings, RECEIVED, "gw")) == \
        _outcome(lambda: _the_long_way(document, bindings))
