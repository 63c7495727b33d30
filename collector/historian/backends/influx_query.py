"""The history queries on InfluxDB, in Flux with parameters.

User input never goes into the query text: every value is a Flux parameter (`p_*`,
sent as `extern` options by influxdb-client), and the text is assembled only from the
constant fragments below. Results are handed to the shared logic in query.py so both
backends give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from linemon.model import DowntimeEvent, PartsProduced

from ..query import (
    AuditEntry,
    CountBucket,
    DowntimeReads,
    HistoryUnavailable,
    SeriesPoint,
    StateInterval,
    StateRow,
    align,
    build_timeline,
    check_agg,
    check_every,
    check_range,
    code_downtime_via,
    fill_counts,
)
from ..schema import (
    OeeSnapshot,
    downtime_from_json,
    downtime_from_row,
    from_ns,
    oee_from_row,
    parts_from_row,
    to_ns,
)
from .base import StoreError, StoreRejected

BEGINNING = "1970-01-01T00:00:00Z"
PIVOT = '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
_AGG_FN = {"mean": "mean", "min": "min", "max": "max", "last": "last"}


def _ts(row: dict[str, Any]) -> int:
    return to_ns(row["_time"])


class InfluxQueryMixin(DowntimeReads):
    cfg: Any
    _clock: Callable[[], datetime]
    edit_sink: Any

    async def flux(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def unavailable(err: Exception) -> Exception:
        if isinstance(err, StoreRejected):  # a 400 on a query is our bug, not an outage
            return RuntimeError(f"Flux query rejected: {err}")
        return HistoryUnavailable(str(err)) if isinstance(err, StoreError) else err

    def _range(self, start: datetime, end: datetime) -> dict[str, Any]:
        s, e = check_range(start, end)
        return {"p_start": from_ns(s), "p_stop": from_ns(e),
                "p_bucket": self.cfg.bucket, "p_events": self.cfg.downsampled_bucket}

    async def _downtime(self, start: datetime, end: datetime, line: str | None,
                        machine: str | None) -> list[DowntimeEvent]:
        params = self._range(start, end)
        q = ('from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n'
             '|> filter(fn: (r) => r._measurement == "downtime")\n')
        if machine is not None:
            q += "|> filter(fn: (r) => r.machine == p_machine)\n"
            params["p_machine"] = machine
        if line is not None:
            q += "|> filter(fn: (r) => r.line == p_line)\n"
            params["p_line"] = line
        rows = await self.flux(q + PIVOT, params)
        return [downtime_from_row(r, _ts(r)) for r in rows if r.get("id") is not None]

    async def get_downtime(self, id: str) -> DowntimeEvent | None:
        # Find the point by its id field, then read all its fields at that (series, time).
        q = (f'from(bucket: p_events) |> range(start: {BEGINNING})\n'
             '|> filter(fn: (r) => r._measurement == "downtime" and r._field == "id" '
             'and r._value == p_id)')
        hits = await self.flux(q, {"p_events": self.cfg.downsampled_bucket, "p_id": id})
        if not hits:
            return None
        hit = hits[0]
        t = hit["_time"]
        q = ('from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n'
             '|> filter(fn: (r) => r._measurement == "downtime" and r.machine == p_machine)\n'
             + PIVOT)
        rows = await self.flux(q, {"p_events": self.cfg.downsampled_bucket, "p_start": t,
                                   "p_stop": t + timedelta(microseconds=1),
                                   "p_machine": hit["machine"]})
        rows = [r for r in rows if r.get("line") == hit.get("line") and r.get("id") == id]
        return downtime_from_row(rows[0], _ts(rows[0])) if rows else None

    async def code_downtime(
        self, id: str, reason_code: str, reason_text: str | None = None,
        note: str | None = None, *, by: str, at: datetime,
    ) -> tuple[DowntimeEvent, DowntimeEvent]:
        return await code_downtime_via(self, self.edit_sink, id, reason_code, reason_text,
                                       note, by=by, at=at)

    async def downtime_audit(self, id: str) -> list[AuditEntry]:
        q = (f'from(bucket: p_events) |> range(start: {BEGINNING})\n'
             '|> filter(fn: (r) => r._measurement == "downtime_audit" and r.downtime_id == p_id)\n'
             + PIVOT)
        rows = await self.flux(q, {"p_events": self.cfg.downsampled_bucket, "p_id": id})
        rows.sort(key=_ts)
        return [AuditEntry(id, r["by"], r["_time"], downtime_from_json(r["before"]),
                           downtime_from_json(r["after"])) for r in rows]

    async def state_timeline(
        self, machine: str, start: datetime, end: datetime) -> list[StateInterval]:
        params = self._range(start, end) | {"p_machine": machine}
        where = '|> filter(fn: (r) => r._measurement == "state" and r.machine == p_machine)\n'
        # last() is pushed down to storage, so finding the state in effect is cheap.
        lasts = await self.flux(
            f'from(bucket: p_events) |> range(start: {BEGINNING}, stop: p_start)\n'
            + where + "|> last()", params)
        prior = None
        states = [r for r in lasts if r["_field"] == "state"]
        if states:
            top = max(states, key=_ts)
            at = {r["_field"]: r["_value"] for r in lasts
                  if _ts(r) == _ts(top) and r.get("line") == top.get("line")}
            prior = StateRow(_ts(top), top["_value"], at.get("reason_code"),
                             at.get("reason_text"))
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n" + where + PIVOT,
            params)
        changes = [StateRow(_ts(r), r["state"], r.get("reason_code"), r.get("reason_text"))
                   for r in rows if r.get("state") is not None]
        return build_timeline(prior, changes, start, end, self._clock())

    async def counts(
        self, machine: str, start: datetime, end: datetime, every_s: int) -> list[CountBucket]:
        every = check_every(start, end, every_s)
        params = self._range(start, end) | {"p_machine": machine,
                                            "p_every": timedelta(seconds=every_s)}
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n"
            '|> filter(fn: (r) => r._measurement == "parts" and r.machine == p_machine '
            'and (r._field == "good" or r._field == "reject"))\n'
            '|> group(columns: ["_field"])\n'
            '|> aggregateWindow(every: p_every, fn: sum, createEmpty: false, timeSrc: "_start")',
            params)
        sums: dict[int, list[int]] = {}
        for r in rows:
            pair = sums.setdefault(align(_ts(r), every), [0, 0])
            pair[0 if r["_field"] == "good" else 1] += int(r["_value"] or 0)
        return fill_counts({b: (g, j) for b, (g, j) in sums.items()}, start, end, every)

    async def signal_series(
        self, machine: str, signal: str, start: datetime, end: datetime, every_s: int,
        agg: str = "mean",
    ) -> list[SeriesPoint]:
        check_agg(agg)
        every = check_every(start, end, every_s)
        raw_horizon = self._clock() - timedelta(days=self.cfg.retention_days)
        if start < raw_horizon and every_s % 60 == 0:
            return await self._series_from_minutes(machine, signal, start, end, every, agg)
        params = self._range(start, end) | {"p_machine": machine, "p_signal": signal,
                                            "p_every": timedelta(seconds=every_s)}
        rows = await self.flux(
            "from(bucket: p_bucket) |> range(start: p_start, stop: p_stop)\n"
            '|> filter(fn: (r) => r._measurement == "sample" and r.machine == p_machine '
            'and r.signal == p_signal and r._field == "value" and r.quality != "bad")\n'
            '|> group() |> sort(columns: ["_time"])\n'
            f"|> aggregateWindow(every: p_every, fn: {_AGG_FN[agg]}, createEmpty: false, "
            'timeSrc: "_start")', params)
        points = {align(_ts(r), every): float(r["_value"]) for r in rows
                  if r["_value"] is not None}
        return [SeriesPoint(from_ns(b), v) for b, v in sorted(points.items())]

    async def _series_from_minutes(self, machine: str, signal: str, start: datetime,
                                   end: datetime, every: int, agg: str) -> list[SeriesPoint]:
        """Older than the raw retention: re-aggregate the 1-minute aggregates (exactly)."""
        params = self._range(start, end) | {"p_machine": machine, "p_signal": signal}
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n"
            '|> filter(fn: (r) => r._measurement == "sample_1m" and r.machine == p_machine '
            "and r.signal == p_signal)\n" + PIVOT, params)
        acc: dict[int, list[float]] = {}  # bucket -> [count, sum, min, max, last, last_ts]
        for r in sorted(rows, key=_ts):
            b = align(_ts(r), every)
            a = acc.setdefault(b, [0, 0.0, float("inf"), float("-inf"), 0.0])
            a[0] += r["count"]
            a[1] += r["sum"]
            a[2], a[3], a[4] = min(a[2], r["min"]), max(a[3], r["max"]), r["last"]
        pick = {"mean": lambda a: a[1] / a[0], "min": lambda a: a[2], "max": lambda a: a[3],
                "last": lambda a: a[4]}[agg]
        return [SeriesPoint(from_ns(b), float(pick(a))) for b, a in sorted(acc.items()) if a[0]]

    async def oee_snapshots(
        self, *, start: datetime, end: datetime, machine: str | None = None,
        line: str | None = None,
    ) -> list[OeeSnapshot]:
        if machine is None and line is None:
            raise ValueError("give a machine or a line")
        params = self._range(start, end)
        q = ("from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n"
             '|> filter(fn: (r) => r._measurement == "oee")\n')
        if machine is not None:
            q += "|> filter(fn: (r) => r.machine == p_machine)\n"
            params["p_machine"] = machine
        else:
            q += "|> filter(fn: (r) => not exists r.machine)\n"
        if line is not None:
            q += "|> filter(fn: (r) => r.line == p_line)\n"
            params["p_line"] = line
        rows = await self.flux(q + PIVOT, params)
        rows.sort(key=_ts)
        return [oee_from_row(r, _ts(r)) for r in rows]

    async def parts_produced(
        self, machine: str, start: datetime, end: datetime) -> list[PartsProduced]:
        params = self._range(start, end) | {"p_machine": machine}
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n"
            '|> filter(fn: (r) => r._measurement == "parts" and r.machine == p_machine)\n'
            + PIVOT, params)
        rows.sort(key=_ts)
        return [parts_from_row(r, _ts(r)) for r in rows]
