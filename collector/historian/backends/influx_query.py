"""The history queries on InfluxDB, in Flux with parameters.

User input never goes into the query text: every value is a Flux parameter (`p_*`,
sent as `extern` options by influxdb-client), and the text is assembled only from the
constant fragments below. Results are handed to the shared logic in query.py so both
backends give the same answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from influxdb_client.client.util.date_utils import get_date_helper

from linemon.model import DowntimeEvent, PartsProduced

from ..query import (
    AuditEntry,
    CountBucket,
    DowntimeReads,
    DowntimeSearch,
    HistoryUnavailable,
    SeriesPoint,
    StateInterval,
    StateTuple,
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
# The downtime filters in Flux, as query.DowntimeSearch defines them.
REASON = "(if exists r.manual_reason_code then r.manual_reason_code else r.reason_code)"
CATEGORY = ('(if exists r.category and r.category != "" then r.category '
            'else "unplanned")')
PIVOT = '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
# Stops as rows without the columns nobody reads: a month of them is 13 MB of CSV otherwise.
STOPS = PIVOT + '\n|> drop(columns: ["_start", "_stop", "_measurement"])'
_parse_date = get_date_helper().parse_date  # what flux_csv.parse_rows parses _time with


def _ts(row: dict[str, Any]) -> int:
    return to_ns(row["_time"])


def ns_of(rfc3339: str) -> int:
    """A raw `_time` cell in ns, as `_ts` gives it from the parsed row."""
    return to_ns(_parse_date(rfc3339))


def any_machine(machines: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """A filter on any of these machines (influxd pushes an `or` of tag values down)."""
    names = {f"p_machine{i}": m for i, m in enumerate(machines)}
    cond = " or ".join(f"r.machine == {n}" for n in names) or "false"
    return f"|> filter(fn: (r) => {cond})\n", names


def merge_series(rows: list[dict[str, Any]], every: int, agg: str) -> list[SeriesPoint]:
    """One point per window from the per-series window aggregates (rows of `signal_series`:
    `_time` is the window start, or for "last" the time of the series' last point)."""
    acc: dict[int, list[Any]] = {}
    for r in rows:
        v = r["_value"]
        if v is None:
            continue
        t = _ts(r)
        b = align(t, every)
        a = acc.get(b)
        if agg == "mean":
            a = acc.setdefault(b, [0.0, 0])
            a[0 if r["result"] == "sum" else 1] += v
        elif agg == "last":
            if a is None or t >= a[1]:
                acc[b] = [float(v), t]
        elif a is None:
            acc[b] = [float(v)]
        else:
            a[0] = max(a[0], v) if agg == "max" else min(a[0], v)
    if agg == "mean":
        return [SeriesPoint(from_ns(b), float(a[0] / a[1])) for b, a in sorted(acc.items())
                if a[1]]
    return [SeriesPoint(from_ns(b), float(a[0])) for b, a in sorted(acc.items())]


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

    # Downtime pages. Pivoting every stop of a month into rows costs influxd over a second
    # and each row function (map, filter) in Flux several more per 100,000 rows, so:
    # - by start without field filters: find the page's time span from the `id` field alone
    #   (storage reads one field; sorting 100,000 rows is cheap), then pivot just that span;
    # - otherwise pivot, filter only what was asked, sort on stored columns and cut; an
    #   open stop (no end yet, so no stored duration) is looked for separately.
    # Either way the store returns a superset of the page's stops plus the one after, and
    # DowntimeSearch.pick (Python) gives them their exact order and cut.

    def _downtime_flux(self, start_ns: int, end_ns: int, line: str | None,
                       machine: str | None, fields: str = "", *,
                       machines: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"p_events": self.cfg.downsampled_bucket,
                                  "p_start": start_ns, "p_stop": end_ns}
        q = ("from(bucket: p_events) "
             "|> range(start: time(v: p_start), stop: time(v: p_stop))\n"
             f'|> filter(fn: (r) => r._measurement == "downtime"{fields})\n')
        if machine is not None:
            q += "|> filter(fn: (r) => r.machine == p_machine)\n"
            params["p_machine"] = machine
        if machines is not None:
            where, names = any_machine(machines)
            q += where
            params |= names
        if line is not None:
            q += "|> filter(fn: (r) => r.line == p_line)\n"
            params["p_line"] = line
        return q, params

    async def _downtime_rows(self, q: str, params: dict[str, Any]) -> list[DowntimeEvent]:
        rows = await self.flux(q, params)
        return [downtime_from_row(r, _ts(r)) for r in rows if r.get("id") is not None]

    async def _downtime_page(self, search: DowntimeSearch) -> list[DowntimeEvent]:
        if search.order != "duration_desc" and not search.filters_fields:
            return await self._page_by_start(search)
        q, params = self._downtime_flux(search.start_ns, search.end_ns, search.line,
                                        search.machine)
        q += STOPS + "\n"
        if search.category is not None:
            q += f"|> filter(fn: (r) => {CATEGORY} == p_category)\n"
            params["p_category"] = search.category
        if search.reason_code is not None:
            q += f"|> filter(fn: (r) => {REASON} == p_reason)\n"
            params["p_reason"] = search.reason_code
        if search.uncoded_only:
            q += ("|> filter(fn: (r) => not exists r.manual_reason_code "
                  "and not exists r.reason_code)\n")
        duration = search.order == "duration_desc"
        if duration or search.min_duration_s is not None:
            # Closed stops by their stored duration (what duration_s(now) gives for them);
            # the open ones (no duration: -Inf here, last in the order) are added below.
            # fill, not a filter on `exists`: a row function costs influxd ~0.3 s of CPU
            # for a month of stops.
            q += '|> fill(column: "duration_s", value: float(v: "-Inf"))\n'
        if search.min_duration_s is not None:
            q += "|> filter(fn: (r) => r.duration_s >= p_min_duration)\n"
            params["p_min_duration"] = search.min_duration_s
        key = ["duration_s", "_time", "id"] if duration else ["_time", "id"]
        if search.after is not None:
            op = "<" if search.descending else ">"
            names = [f"p_after{i}" for i in range(len(key))]
            terms = [f"time(v: {n})" if k == "_time" else n for k, n in zip(key, names,
                                                                              strict=True)]
            after = [float(search.after[0]), *search.after[1:]] if duration else search.after
            params |= dict(zip(names, after, strict=True))
            # (k0, k1, ...) op (a0, a1, ...), lexicographically, like Python's lists
            cond = f"r.{key[-1]} {op} {terms[-1]}"
            for k, t in zip(key[-2::-1], terms[-2::-1], strict=True):
                cond = f"r.{k} {op} {t} or (r.{k} == {t} and ({cond}))"
            q += f"|> filter(fn: (r) => {cond})\n"
        q += (f'|> group() |> sort(columns: {json.dumps(key)}, desc: '
              f'{"true" if search.descending else "false"})\n|> limit(n: p_limit)')
        params["p_limit"] = search.limit + 1
        found = await self._downtime_rows(q, params)
        if duration or search.min_duration_s is not None:
            found += await self._open_stops(search)  # some may be in `found` already
            found = list({(ev.line, ev.machine, ev.start, ev.id): ev for ev in found}.values())
        return search.pick(found)

    async def _page_by_start(self, search: DowntimeSearch) -> list[DowntimeEvent]:
        lo, hi = search.start_ns, search.end_ns
        q, params = self._downtime_flux(lo, hi, search.line, search.machine,
                                        ' and r._field == "id"')
        if search.after is not None:
            after_t, after_id = search.after
            params |= {"p_after_t": after_t, "p_after_id": after_id}
            op = "<" if search.descending else ">"
            q += (f"|> filter(fn: (r) => r._time {op} time(v: p_after_t) or "
                  f"(r._time == time(v: p_after_t) and r._value {op} p_after_id))\n")
        q += ('|> keep(columns: ["_time", "_value"]) |> group()\n'
              f'|> sort(columns: ["_time", "_value"], desc: '
              f'{"true" if search.descending else "false"}) |> limit(n: p_limit)')
        params["p_limit"] = search.limit + 1
        times = [_ts(r) for r in await self.flux(q, params)]
        if not times:
            return []
        if search.descending:
            lo = times[-1] if len(times) > search.limit else lo
            hi = times[0] + 1
        else:
            lo = times[0]
            hi = times[-1] + 1 if len(times) > search.limit else hi
        q, params = self._downtime_flux(lo, hi, search.line, search.machine)
        return search.pick(await self._downtime_rows(q + STOPS, params))

    async def _open_stops(self, search: DowntimeSearch) -> list[DowntimeEvent]:
        """The stops without an end in the range: per machine, the count of `id` fields
        (cheap: storage counts) against the count of `end_ns` fields; only a machine with
        more ids than ends has its stops read."""
        q, params = self._downtime_flux(search.start_ns, search.end_ns, search.line,
                                        search.machine,
                                        ' and (r._field == "id" or r._field == "end_ns")')
        counts: dict[tuple[Any, Any], dict[str, int]] = {}
        for r in await self.flux(q + "|> count()", params):
            counts.setdefault((r.get("machine"), r.get("line")), {})[r["_field"]] = r["_value"]
        out: list[DowntimeEvent] = []
        for (machine, line), n in counts.items():
            if n.get("id", 0) <= n.get("end_ns", 0):
                continue
            q, params = self._downtime_flux(search.start_ns, search.end_ns, line, machine)
            q += STOPS + "\n|> filter(fn: (r) => not exists r.end_ns)"
            out += await self._downtime_rows(q, params)
        return out

    async def _all_downtime(self, start: datetime, end: datetime, line: str | None,
                            machine: str | None, category: str | None) -> list[DowntimeEvent]:
        s, e = check_range(start, end)
        q, params = self._downtime_flux(s, e, line, machine)
        events = await self._downtime_rows(q + STOPS, params)
        return sorted((ev for ev in events if category is None or ev.category == category),
                      key=lambda ev: (ev.start, ev.id))

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
        prior: list[StateTuple] = []
        states = [r for r in lasts if r["_field"] == "state"]
        if states:
            top = max(states, key=_ts)
            at = {r["_field"]: r["_value"] for r in lasts
                  if _ts(r) == _ts(top) and r.get("line") == top.get("line")}
            prior = [(_ts(top), top["_value"], at.get("reason_code"), at.get("reason_text"))]
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n" + where + PIVOT,
            params)
        changes = sorted(((_ts(r), r["state"], r.get("reason_code"), r.get("reason_text"))
                          for r in rows if r.get("state") is not None), key=lambda c: c[0])
        return build_timeline(prior + changes, start, end, self._clock())

    async def counts(
        self, machine: str, start: datetime, end: datetime, every_s: int) -> list[CountBucket]:
        every = check_every(start, end, every_s)
        params = self._range(start, end) | {"p_machine": machine,
                                            "p_every": timedelta(seconds=every_s)}
        rows = await self.flux(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n"
            '|> filter(fn: (r) => r._measurement == "parts" and r.machine == p_machine '
            'and (r._field == "good" or r._field == "reject"))\n'
            # Per series (no group() first): then influxd sums in storage, in half the time.
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
        # Each pipeline has exactly the shape influxd pushes down to storage (range |>
        # filter on tags and field |> aggregateWindow or window |> selector), so storage
        # aggregates per series and only the windows come back; a group() or sort() before
        # the aggregate would stream every raw point through the Flux engine instead (a
        # 30-day 1-minute series then ran into the query timeout). The series of one
        # machine and signal (a source or quality each) are merged here: min/max of the
        # extremes, the mean from sums and counts, the last point by its own time.
        head = ("from(bucket: p_bucket) |> range(start: p_start, stop: p_stop)\n"
                '|> filter(fn: (r) => r._measurement == "sample" and r.machine == p_machine '
                'and r.signal == p_signal and r._field == "value" and r.quality != "bad")\n')
        if agg == "last":
            q = (head + '|> window(every: p_every) |> last()\n'
                 '|> keep(columns: ["_time", "_value"])')
        else:
            fns = ("sum", "count") if agg == "mean" else (agg,)
            q = "\n".join(
                f"{head}|> aggregateWindow(every: p_every, fn: {fn}, createEmpty: false, "
                f'timeSrc: "_start")\n|> keep(columns: ["_time", "_value"]) '
                f'|> yield(name: "{fn}")' for fn in fns)
        rows = await self.flux(q, params)
        return merge_series(rows, every, agg)

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
