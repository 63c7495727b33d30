"""What the history routes share: the query interface, scope rules, and error translation.

The historian raises ValueError for a request it cannot answer (bad cursor, too many
buckets); that is the caller's mistake, so it becomes 422 here, at the boundary.
HistoryUnavailable and DowntimeNotFound have app-wide handlers (503, 404).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from fastapi import HTTPException, Request

from api.auth import Principal
from collector.historian import HistoryQuery
from collector.historian.query import decode_cursor
from linemon.config import LineConfig, MachineConfig
from linemon.model import DowntimeCategory, DowntimeEvent
from linemon.roles import Runtime

MAX_EVENTS = 200_000  # one analysis reads at most this many stops; narrow the range beyond


def linemon_of(request: Request) -> Runtime:
    return request.app.state.linemon


def query_of(request: Request) -> HistoryQuery:
    return linemon_of(request).historian.query


@contextmanager
def caller_errors() -> Iterator[None]:
    try:
        yield
    except ValueError as err:
        raise HTTPException(422, str(err)) from err


def line_config(lm: Runtime, line: str, *, in_query: bool = False) -> LineConfig:
    """404 for a line in the path (no such resource), 422 for one in the query (bad filter)."""
    found = next((ln for ln in lm.config.lines if ln.id == line), None)
    if found is None:
        if in_query:
            raise HTTPException(422, f"query.line: no line {line!r}; see GET /api/v1/lines")
        raise HTTPException(404, f"no line {line!r}; see GET /api/v1/lines")
    return found


def machine_config(lm: Runtime, line: str, machine: str) -> MachineConfig:
    found = next((m for m in line_config(lm, line).machines if m.id == machine), None)
    if found is None:
        raise HTTPException(404, f"no machine {machine!r} on line {line!r}")
    return found


def visible_lines(lm: Runtime, who: Principal, line: str | None) -> list[LineConfig]:
    """The lines a history query covers: the one asked for, else every line the key sees."""
    if line is not None:  # auth already refused lines the key may not see
        return [line_config(lm, line, in_query=True)]
    return [ln for ln in lm.config.lines if who.may_see(ln.id)]


def line_filter(lm: Runtime, who: Principal, line: str | None, machine: str | None
                ) -> tuple[str | None, str | None]:
    """(line, machine) filters for one paged downtime query, checked against the key."""
    if machine is not None:
        owner = next((ln.id for ln, m in lm.config.machines() if m.id == machine), None)
        if owner is None:
            raise HTTPException(422, f"query.machine: no machine {machine!r} in the plant")
        if not who.may_see(owner):
            raise HTTPException(403, f"key {who.name!r} is not allowed on line {owner!r}")
        if line is not None and line != owner:
            raise HTTPException(422, f"query.machine: {machine!r} is on line {owner!r}, "
                                f"not {line!r}")
        return owner, machine
    if line is not None:
        line_config(lm, line, in_query=True)
        return line, None
    if who.lines is None:
        return None, None
    if len(who.lines) == 1:
        return next(iter(who.lines)), None
    raise HTTPException(422, f"query.line: key {who.name!r} sees lines "
                        f"{', '.join(sorted(who.lines))}; name one")


def check_cursor(cursor: str | None, order: str) -> None:
    """Refuse a cursor that does not belong to this order, or whose key is not ours."""
    if cursor is None:
        return
    with caller_errors():
        key = decode_cursor(cursor, order)
    kinds = (float, int, str) if order == "duration_desc" else (int, str)
    # The store compares these keys with its own; a forged shape would fail there (500).
    if len(key) != len(kinds) or not all(map(_fits, key, kinds)):
        raise HTTPException(422, "query.cursor: invalid cursor (it belongs to another query "
                            "or was altered)")


def _fits(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


async def all_downtime(q: HistoryQuery, *, start: datetime, end: datetime,
                       line: str | None = None, machine: str | None = None,
                       category: DowntimeCategory | None = None) -> list[DowntimeEvent]:
    """Every stop that started in [start, end), oldest first, in one read of the store."""
    with caller_errors():
        out = await q.all_downtime_events(start=start, end=end, line=line, machine=machine,
                                          category=category)
    check_stop_count(len(out))
    return out


def check_stop_count(count: int) -> None:
    """An analysis covers at most MAX_EVENTS stops (of one machine, when per machine)."""
    if count > MAX_EVENTS:
        raise HTTPException(422, f"more than {MAX_EVENTS} stops in this range; narrow it")
