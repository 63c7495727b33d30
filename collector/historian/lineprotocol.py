"""linemon's own InfluxDB line-protocol serializer (the hot path) and a parser.

Why not influxdb-client's `Point`: it costs about 5x more per point, and it escapes
backslashes and newlines in tags in ways influxd does not unescape (`\\\\` and `\\n` are
stored literally), so a tag value would not come back as it went in.

The rules below follow influxd 2.x's parser (models/points.go):
- measurement: `,` and space are escaped with a backslash;
- tag keys, tag values, field keys: `,`, `=` and space are escaped. influxd does not
  unescape `\\\\`, so a backslash is literal *unless* it precedes one of those characters
  or ends the string; such strings cannot be represented and are rejected here, as are
  newlines and empty names. Empty or None tag values are omitted (influxd rejects them);
- string field values: `"` and `\\` are escaped; line breaks are allowed inside quotes but
  normalized to LF (see `normalize_newlines`); empty strings are left out (format_fields);
- integers get an `i` suffix, booleans are `true`/`false`, floats must be finite;
- timestamps are integer nanoseconds since the epoch (UTC).

`parse_line` reads what `encode_point` writes with the same unescaping rules as influxd.
The SQLite backend uses it to store spooled lines, so both stores see the same points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

FieldValue = float | int | bool | str

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# influxd accepts timestamps in [1677-09-21, 2262-04-11]; its bounds are int64 minus a margin.
TS_MIN, TS_MAX = -9223372036854775806, 9223372036854775806

_SPECIAL = re.compile(r"[,= \\\n\r]")
_BAD_BACKSLASH = re.compile(r"\\([,= ]|$)")


class LineProtocolError(ValueError):
    """A value that cannot be written as line protocol, or a line that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ns: int | None


def check_name(value: str, what: str = "tag value") -> None:
    """Raise LineProtocolError if `value` cannot be a measurement, tag key/value or field key."""
    if not value:
        raise LineProtocolError(f"{what} must not be empty")
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"{what} {value!r} contains a line break")
    if _BAD_BACKSLASH.search(value):
        raise LineProtocolError(
            f"{what} {value!r}: a backslash must not end it or precede ',', '=' or a space"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise LineProtocolError(f"{what} {value!r} is not valid UTF-8") from err


def escape_measurement(name: str) -> str:
    if _SPECIAL.search(name) is None and name and name[0] != "#":
        return name
    check_name(name, "measurement")
    if name[0] == "#":  # a leading '#' makes influxd read the line as a comment
        raise LineProtocolError(f"measurement {name!r} must not start with '#'")
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(value: str, what: str = "tag value") -> str:
    """Escape a tag key, tag value or field key."""
    if value and _SPECIAL.search(value) is None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise LineProtocolError(f"{what} {value!r} is not valid UTF-8") from err
        return value
    check_name(value, what)
    return value.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def format_field(value: FieldValue) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"integer field {value} is outside int64")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"float field {value} is not finite")
        return repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise LineProtocolError(f"string field {value!r} is not valid UTF-8") from err
        if "\r" in value:  # see normalize_newlines
            value = normalize_newlines(value)
        if "\\" in value or '"' in value:
            value = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{value}"'
    raise LineProtocolError(f"unsupported field type {type(value).__name__}")


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR become LF. Flux's CSV output turns LF into CRLF and drops a lone CR,
    so only LF line breaks come back from InfluxDB as they went in (readers undo the CRLF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """`measurement,k=v,...` with tags sorted by key and empty values left out."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        tag_value = tags[key]
        if tag_value:
            parts.append(f"{escape_tag(key, 'tag key')}={escape_tag(tag_value)}")
    return ",".join(parts)


def format_fields(fields: Mapping[str, FieldValue | None]) -> str:
    """Fields that are None or "" are left out. Empty strings because influxd 2.x returns
    them misplaced (other rows' values shift into their place; influxdata/influxdb#26916,
    reproduced on 2.7.12), so the schema treats "" like "no value" on both stores."""
    out = [
        f"{_field_key(key)}={format_field(value)}"
        for key, value in fields.items()
        if value is not None and value != ""
    ]
    if not out:
        raise LineProtocolError("a point needs at least one field")
    return ",".join(out)


@lru_cache(maxsize=4096)  # field keys are the schema's few names: escape each once
def _field_key(key: str) -> str:
    return escape_tag(key, "field key")


def check_ts(ts_ns: int) -> int:
    if not TS_MIN <= ts_ns <= TS_MAX:
        raise LineProtocolError(f"timestamp {ts_ns} is outside influxd's range")
    return ts_ns


def encode_point(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ns: int,
) -> str:
    return encode_line(series_key(measurement, tags), fields, ts_ns)


def encode_line(key: str, fields: Mapping[str, FieldValue | None], ts_ns: int) -> str:
    """A point from its series key (`series_key`), for callers that keep the keys."""
    return f"{key} {format_fields(fields)} {check_ts(ts_ns)}"


# --- parser -------------------------------------------------------------------------


def _scan(line: str, i: int, stops: str) -> int:
    """Index of the first unescaped char in `stops` (or len); a backslash skips the next char."""
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in stops:
            return i
        i += 1
    return n


def _unescape(token: str, chars: str) -> str:
    if "\\" not in token:
        return token
    for c in chars:  # naive replace, exactly like influxd's unescapeTag
        token = token.replace("\\" + c, c)
    return token


def _parse_value(raw: str, line: str) -> FieldValue:
    if "_" in raw or not raw:  # Python's int()/float() accept "1_000"; influxd does not
        raise LineProtocolError(f"bad field value {raw!r} in {line!r}")
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    try:
        if raw.endswith(("i", "u")):
            return int(raw[:-1])
        value = float(raw)
    except ValueError:
        raise LineProtocolError(f"bad field value {raw!r} in {line!r}") from None
    if not math.isfinite(value) or raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise LineProtocolError(f"bad field value {raw!r} in {line!r}")
    return value


def _scan_string(line: str, i: int) -> tuple[str, int]:
    """Read a quoted field string starting at the opening quote; return (value, next index)."""
    out: list[str] = []
    i += 1
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in '"\\':
            out.append(line[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise LineProtocolError(f"unterminated string in {line!r}")


def parse_line(line: str) -> Point:
    """Parse one line of line protocol (as influxd would)."""
    end = _scan(line, 0, ", ")
    measurement = _unescape(line[:end], ", ")
    if not measurement:
        raise LineProtocolError(f"missing measurement in {line!r}")
    i = end
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        eq = _scan(line, i + 1, "=, ")
        if eq >= len(line) or line[eq] != "=":
            raise LineProtocolError(f"missing tag value in {line!r}")
        stop = _scan(line, eq + 1, ", ")
        key, value = line[i + 1 : eq], line[eq + 1 : stop]
        if not key or not value:
            raise LineProtocolError(f"empty tag key or value in {line!r}")
        tags[_unescape(key, ",= ")] = _unescape(value, ",= ")
        i = stop
    if i >= len(line) or line[i] != " ":
        raise LineProtocolError(f"missing fields in {line!r}")
    fields: dict[str, FieldValue] = {}
    i += 1
    while True:
        eq = _scan(line, i, "=, ")
        if eq >= len(line) or line[eq] != "=" or eq == i:
            raise LineProtocolError(f"bad field in {line!r}")
        key = _unescape(line[i:eq], ",= ")
        if eq + 1 < len(line) and line[eq + 1] == '"':
            fields[key], i = _scan_string(line, eq + 1)
        else:
            stop = _scan(line, eq + 1, ", ")
            fields[key] = _parse_value(line[eq + 1 : stop], line)
            i = stop
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    ts_ns = None
    if i < len(line):
        if line[i] != " ":
            raise LineProtocolError(f"junk after fields in {line!r}")
        raw_ts = line[i + 1 :]
        try:
            ts_ns = check_ts(int(raw_ts))
        except ValueError:
            raise LineProtocolError(f"bad timestamp {raw_ts!r} in {line!r}") from None
    return Point(measurement, tags, fields, ts_ns)
