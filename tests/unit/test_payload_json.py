"""parse_json takes orjson's fast path and falls back to the standard parser: a payload reads
as json.loads reads it (one exception: an integer beyond 64 bits reads as a float), and a bad
one is refused for its reason."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.sources.payload import Rejected, parse_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(JSON)
def test_any_document_reads_as_the_standard_parser_reads_it(document: object) -> None:
    payload = json.dumps(document).encode()
    assert parse_json(payload) == json.loads(payload)


@pytest.mark.parametrize("payload", [
    b'{"value": 12.5, "ts": 1795263349.575123, "seq": 123}',
    b'{"value": "\\ud800"}',  # a lone surrogate escape
    b'{"value": 1, "value": 2}',  # the last one wins, in both
    b'\xef\xbb\xbf{"value": 1}',  # a byte-order mark
])
def test_the_edge_cases_read_as_the_standard_parser_reads_them(payload: bytes) -> None:
    assert parse_json(payload) == json.loads(payload)


def test_an_integer_beyond_64_bits_reads_as_a_float() -> None:
    document = parse_json(b'{"value": 123456789012345678901234567890}')
    assert document == {"value": 1.2345678901234568e29}


def test_nan_reads_as_nan_as_before() -> None:
    document = parse_json(b'{"value": NaN}')
    assert isinstance(document, dict) and math.isnan(document["value"])


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"value": 1,', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"value": "\xff\xfe"}', "invalid_utf8"),
])
def test_bad_payloads_are_refused_for_their_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse_json(payload)
    assert refused.value.reason == reason
