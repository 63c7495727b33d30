"""The SQLite layout of the history schema: one table per measurement, upserts like InfluxDB's.

A row is keyed like an InfluxDB point (tags + timestamp); missing tags are stored as ''.
Writing a key again replaces the fields it carries and keeps the others, which is what
InfluxDB does, so replays and downtime edits behave the same on both stores. Each field
has one type (schema.FIELDS), enforced here the way InfluxDB enforces a field's type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..lineprotocol import Point
from ..schema import (
    ALERT,
    AUDIT,
    DOWNTIME,
    FIELDS,
    OEE,
    PARTS,
    SAMPLE,
    SAMPLE_1M,
    STATE,
    TAGS,
)

# Primary key order = the access path of the queries (machine first, then time).
PK: dict[str, tuple[str, ...]] = {
    SAMPLE: ("machine", "signal", "ts_ns", "line", "source", "quality"),
    STATE: ("machine", "ts_ns", "line"),
    DOWNTIME: ("machine", "ts_ns", "line"),
    AUDIT: ("downtime_id", "ts_ns", "machine", "line"),
    PARTS: ("machine", "ts_ns", "line"),
    OEE: ("machine", "line", "ts_ns"),
    ALERT: ("rule_id", "fingerprint", "ts_ns", "line", "machine"),
    SAMPLE_1M: ("machine", "signal", "ts_ns", "line"),
}
EXTRA_INDEXES = (
    "CREATE INDEX IF NOT EXISTS downtime_id ON downtime(id)",
    "CREATE INDEX IF NOT EXISTS downtime_ts ON downtime(ts_ns)",
)
_SQL_TYPES = {float: "REAL", int: "INTEGER", bool: "INTEGER", str: "TEXT"}


class BadPoint(ValueError):
    """A point that does not fit the schema (unknown measurement, tag, field or type)."""


def ddl() -> list[str]:
    out = []
    for m, pk in PK.items():
        cols = [f"{t} TEXT NOT NULL DEFAULT ''" for t in TAGS[m]] + ["ts_ns INTEGER NOT NULL"]
        cols += [f"{f} {_SQL_TYPES[typ]}" for f, typ in FIELDS[m].items()]
        out.append(f"CREATE TABLE IF NOT EXISTS {m}({', '.join(cols)}, "
                   f"PRIMARY KEY({', '.join(pk)})) WITHOUT ROWID")
    return out + list(EXTRA_INDEXES)


def added_columns(m: str, existing: set[str]) -> list[str]:
    """ALTER statements for the fields a file written by an older linemon lacks (nullable,
    so old rows read back as "absent", as on InfluxDB)."""
    return [f"ALTER TABLE {m} ADD COLUMN {f} {_SQL_TYPES[typ]}"
            for f, typ in FIELDS[m].items() if f not in existing]


def upsert_sql(m: str) -> str:
    tags, fields = TAGS[m], list(FIELDS[m])
    cols = [*tags, "ts_ns", *fields]
    updates = ", ".join(f"{f}=coalesce(excluded.{f}, {f})" for f in fields)
    return (f"INSERT INTO {m}({', '.join(cols)}) VALUES({', '.join('?' * len(cols))}) "
            f"ON CONFLICT({', '.join(PK[m])}) DO UPDATE SET {updates}")


def _check_type(m: str, name: str, value: Any) -> Any:
    want = FIELDS[m].get(name)
    if want is None:
        raise BadPoint(f"unknown field {name!r} for measurement {m!r}")
    # bool is an int in Python but a different type in line protocol: compare exactly.
    if type(value) is not want:
        raise BadPoint(f"field type conflict: {m}.{name} is {want.__name__}, "
                       f"got {type(value).__name__}")
    return int(value) if want is bool else value


def rows_by_table(points: Iterable[Point]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for p in points:
        m = p.measurement
        if m not in PK:
            raise BadPoint(f"unknown measurement {m!r}")
        unknown = set(p.tags) - set(TAGS[m])
        if unknown:
            raise BadPoint(f"unknown tag(s) {sorted(unknown)} for measurement {m!r}")
        if p.ts_ns is None:
            raise BadPoint("point without a timestamp")
        for name, value in p.fields.items():
            _check_type(m, name, value)
        row = [p.tags.get(t, "") for t in TAGS[m]] + [p.ts_ns]
        row += [_stored(p.fields.get(f)) for f in FIELDS[m]]
        out.setdefault(m, []).append(tuple(row))
    return out


def _stored(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def row_dict(m: str, row: Any) -> dict[str, Any]:
    """A sqlite3.Row of table `m` as tag/field dict: '' tags become None, bools are bools."""
    d = {k: row[k] for k in row.keys()}  # noqa: SIM118 - sqlite3.Row is not a Mapping
    for t in TAGS[m]:
        if d.get(t) == "":
            d[t] = None
    for f, typ in FIELDS[m].items():
        if typ is bool and d.get(f) is not None:
            d[f] = bool(d[f])
    return d
