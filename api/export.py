"""Streaming CSV / NDJSON export of downtime events.

Rows are written page by page as the historian hands them over, so an export of a month
never sits in memory whole. Text a person typed (notes, reasons) is defused for
spreadsheets: a cell starting with = + - @ would run as a formula in Excel when a
technician opens the file (CSV injection), so it gets a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from linemon.model import DowntimeEvent

EXPORT_MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
COLUMNS = ("id", "line", "machine", "start", "end", "duration_s", "category", "micro_stop",
           "reason_code", "reason_text", "note", "coded_by")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def row(ev: DowntimeEvent, now: datetime) -> dict[str, object]:
    return {
        "id": ev.id, "line": ev.line, "machine": ev.machine, "start": ev.start.isoformat(),
        "end": ev.end.isoformat() if ev.end else None,
        "duration_s": round(max(0.0, ev.duration_s(now)), 3), "category": str(ev.category),
        "micro_stop": ev.micro_stop, "reason_code": ev.reason_code,
        "reason_text": ev.reason_text, "note": ev.note, "coded_by": ev.coded_by,
    }


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


async def export_rows(pages: AsyncIterator[list[DowntimeEvent]], fmt: str,
                      clock: Callable[[], datetime]) -> AsyncIterator[str]:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        async for items in pages:
            now = clock()
            for ev in items:
                writer.writerow([_cell(v) for v in row(ev, now).values()])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    else:
        async for items in pages:
            now = clock()
            yield "".join(json.dumps(row(ev, now)) + "\n" for ev in items)
