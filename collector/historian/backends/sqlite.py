"""The embedded SQLite store: the default when no InfluxDB is configured.

It takes its points from the same spool as InfluxDB does (the uniform path), parses the
line protocol back and upserts it, one transaction per batch. So the spool, the drop
policy, the quarantine and "nothing lost on kill -9" are the same on both stores.

Writes run on one thread with one connection, reads on another (WAL lets them overlap).
A file that cannot be opened is an outage (StoreUnavailable), not a crash: the data
waits in the spool. Rows older than `retention_days` are deleted at most once an hour.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from linemon.model import DowntimeCategory, DowntimeEvent, PartsProduced

from ..config import SqliteBackendConfig
from ..linebatch import LineBatch
from ..lineprotocol import LineProtocolError, parse_line
from ..query import (
    AuditEntry,
    CountBucket,
    DowntimeReads,
    DowntimeSearch,
    HistoryUnavailable,
    SeriesPoint,
    StateInterval,
    StateRow,
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
    AUDIT,
    DOWNTIME,
    OEE,
    PARTS,
    OeeSnapshot,
    category_of,
    downtime_from_json,
    downtime_from_row,
    from_ns,
    oee_from_row,
    parts_from_row,
)
from ..totals import MachineTotal, TotalReads
from . import sqlite_tables as tables
from .base import StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)
R = TypeVar("R")
PRUNE_EVERY_S = 3600.0

# The downtime sort key and filters in SQL, as query.DowntimeSearch defines them. The start
# is ts_ns itself: linemon writes whole microseconds (times come from datetimes), so it is
# the key's start, and ordering by it lets SQLite walk the downtime_ts index.
START = "ts_ns"
DURATION_US = "(coalesce(end_ns, :now) / 1000 - ts_ns / 1000)"
DURATION = f"({DURATION_US} / 1e6)"
REASON = "coalesce(manual_reason_code, reason_code)"
REASON_TEXT = ("CASE WHEN manual_reason_code IS NULL THEN reason_text "
               "ELSE manual_reason_text END")
CATEGORY = "coalesce(nullif(category, ''), 'unplanned')"
# Per reason (totals.ReasonTotal) in parts per machine and line: in a part the first start
# is one row (the primary key), so with the one min() the bare `id` and text are that
# stop's. Grouping by machine first lets SQLite walk the primary key machine by machine
# (a third faster than the downtime_ts index for a month of stops, as fast for a day).
BY_REASON = (f"SELECT {REASON} AS code, count(*), sum(max(0, {DURATION_US})), min(ts_ns), "
             f"id, {REASON_TEXT} FROM downtime WHERE {{where}} GROUP BY machine, line, code")
BY_MACHINE = (f"SELECT machine, {CATEGORY} AS cat, coalesce(micro_stop, 0) != 0 AS micro, "
              f"end_ns IS NOT NULL AS ended, count(*), sum(max(0, {DURATION_US})), "
              f"sum(min(0, {DURATION_US})) FROM downtime WHERE {{where}} "
              "GROUP BY machine, cat, micro, ended")


def _downtime_where(s: int, e: int, line: str | None, machines: Sequence[str] | None,
                    category: str | None) -> tuple[str, dict[str, Any]]:
    where = "ts_ns >= :start AND ts_ns < :end AND id IS NOT NULL"
    params: dict[str, Any] = {"start": s, "end": e}
    if machines is not None:  # each one a range of the primary key
        names = {f"machine{i}": m for i, m in enumerate(machines)}
        where += (" AND machine = :machine0" if len(names) == 1 else
                  f" AND machine IN ({', '.join(':' + n for n in names)})")
        params |= names
    for name, value, expr in (("line", line, "line"), ("category", category, CATEGORY)):
        if value is not None:
            where += f" AND {expr} = :{name}"
            params[name] = value
    return where, params


def _one(machine: str | None) -> list[str] | None:
    return None if machine is None else [machine]


# Counts per window: each window's sums as a range of the primary key (a month of one
# machine in hours: ~20 ms, then some 6 us more per window); beyond this many windows one
# GROUP BY over the computed window is faster (it sorts every parts row: 70-80 ms for that
# month, 110 ms in minutes).
COUNT_RANGES_MAX = 4_000
COUNT_SUMS = ("SELECT sum(good), sum(reject) FROM parts "
              "WHERE machine = ? AND ts_ns >= ? AND ts_ns < ?")


def _count_ranges(cur: sqlite3.Cursor, machine: str, s: int, e: int, every: int
                  ) -> list[tuple[int, int, int]]:
    """(window, good, reject) of the windows with parts in [s, e), one range read each."""
    out = []
    b = align(s, every)
    while b < e:
        good, reject = cur.execute(COUNT_SUMS, (machine, max(b, s), min(b + every, e))).fetchone()
        if good is not None or reject is not None:
            out.append((b, good or 0, reject or 0))
        b += every
    return out


class SqliteStore(DowntimeReads, TotalReads):
    def __init__(self, cfg: SqliteBackendConfig, *, clock: Callable[[], datetime],
                 edit_sink: Any = None) -> None:
        self.cfg = cfg
        self._clock = clock
        self.edit_sink = edit_sink  # set by the Historian: writes codings through the spool
        self._wpool = ThreadPoolExecutor(1, thread_name_prefix="linemon-history-w")
        self._rpool = ThreadPoolExecutor(1, thread_name_prefix="linemon-history-r")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._upserts = {m: tables.upsert_sql(m) for m in tables.PK}
        self._pruned_at = 0.0

    # --- Store ----------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._on(self._wpool, self._writer)
        except StoreUnavailable as err:
            log.warning("history file not available yet, data waits in the spool: %s", err)

    async def close(self) -> None:
        def shut(attr: str) -> None:
            conn = getattr(self, attr)
            if conn is not None:
                conn.close()
                setattr(self, attr, None)

        await self._on(self._wpool, lambda: shut("_wconn"))
        await self._on(self._rpool, lambda: shut("_rconn"))
        self._wpool.shutdown()
        self._rpool.shutdown()

    async def write(self, kind: str, batch: LineBatch) -> None:
        try:
            points = [parse_line(line) for line in batch.lines()]
            rows = tables.rows_by_table(points)
        except (LineProtocolError, tables.BadPoint) as err:
            raise StoreRejected(str(err)) from err
        await self._on(self._wpool, self._write_rows, rows)

    # --- threads --------------------------------------------------------------------

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except sqlite3.Error as err:
            raise StoreUnavailable(f"history file {self.cfg.path}: {err}") from err

    def _connect(self) -> sqlite3.Connection:
        self.cfg.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.cfg.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _writer(self) -> sqlite3.Connection:
        if self._wconn is None:
            try:
                conn = self._connect()
                for stmt in tables.ddl():
                    conn.execute(stmt)
                for m in tables.PK:
                    have = {r[1] for r in conn.execute(f"PRAGMA table_info({m})")}
                    for stmt in tables.added_columns(m, have):
                        conn.execute(stmt)
            except OSError as err:
                raise sqlite3.OperationalError(str(err)) from err
            self._wconn = conn
        return self._wconn

    def _reader(self) -> sqlite3.Connection:
        if self._rconn is None:
            self._writer_ready_check()
            conn = sqlite3.connect(self.cfg.path, isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.row_factory = sqlite3.Row
            self._rconn = conn
        return self._rconn

    def _writer_ready_check(self) -> None:
        if not self.cfg.path.is_file():
            raise sqlite3.OperationalError("history file does not exist yet")

    def _write_rows(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for m, batch in rows.items():
                conn.executemany(self._upserts[m], batch)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._prune(conn)

    def _prune(self, conn: sqlite3.Connection) -> None:
        self._pruned_at = time.monotonic()
        cutoff = int((time.time() - self.cfg.retention_days * 86_400) * 1e9)
        for m in tables.PK:
            conn.execute(f"DELETE FROM {m} WHERE ts_ns < ?", (cutoff,))

    async def _rows(self, m: str, sql: str, params: Sequence[Any] | dict[str, Any]
                    ) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return [tables.row_dict(m, r) for r in self._reader().execute(sql, params)]

        try:
            return await self._on(self._rpool, run)
        except StoreUnavailable as err:
            raise HistoryUnavailable(str(err)) from err

    # --- HistoryQuery ---------------------------------------------------------------

    async def _tuples(self, fn: Callable[[sqlite3.Cursor], R]) -> R:
        """fn on the reader thread with a cursor of plain tuples (no sqlite3.Row)."""

        def run() -> R:
            cur = self._reader().cursor()
            cur.row_factory = None
            return fn(cur)

        try:
            return await self._on(self._rpool, run)
        except StoreUnavailable as err:
            raise HistoryUnavailable(str(err)) from err

    async def _downtime_page(self, search: DowntimeSearch) -> list[DowntimeEvent]:
        where, params = _downtime_where(search.start_ns, search.end_ns, search.line,
                                        _one(search.machine), search.category)
        params["now"] = search.now_ns
        if search.reason_code is not None:
            where += f" AND {REASON} = :reason"
            params["reason"] = search.reason_code
        if search.uncoded_only:
            where += f" AND {REASON} IS NULL"
        if search.min_duration_s is not None:
            where += f" AND {DURATION} >= :min_duration"
            params["min_duration"] = search.min_duration_s
        key = (DURATION, START, "id") if search.order == "duration_desc" else (START, "id")
        if search.after is not None:  # row values compare like Python's lists
            names = [f":after{i}" for i in range(len(key))]
            where += (f" AND ({', '.join(key)}) {'<' if search.descending else '>'} "
                      f"({', '.join(names)})")
            params |= {n[1:]: v for n, v in zip(names, search.after, strict=True)}
        direction = " DESC" if search.descending else ""
        params["limit"] = search.limit + 1
        return await self._downtime_rows(
            f"SELECT * FROM downtime WHERE {where} ORDER BY "
            f"{', '.join(k + direction for k in key)} LIMIT :limit", params)

    async def _all_downtime(self, start: datetime, end: datetime, line: str | None,
                            machine: str | None, category: str | None) -> list[DowntimeEvent]:
        s, e = check_range(start, end)
        where, params = _downtime_where(s, e, line, _one(machine), category)
        return await self._downtime_rows(
            f"SELECT * FROM downtime WHERE {where} ORDER BY {START}, id", params)

    async def _downtime_rows(self, sql: str, params: dict[str, Any]) -> list[DowntimeEvent]:
        """Stops straight from the row tuples, on the reader thread (a month of them is
        read at once: row_dict per row and the conversion on the event loop took ~1 s)."""

        def run(cur: sqlite3.Cursor) -> list[DowntimeEvent]:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            out = []
            for values in cur:
                row = dict(zip(names, values, strict=True))
                row["machine"] = row["machine"] or None  # as row_dict: '' tags are None
                out.append(downtime_from_row(row, row["ts_ns"]))
            return out

        return await self._tuples(run)

    async def _by_reason(self, start_ns: int, end_ns: int, now_ns: int, line: str | None,
                         machine: str | None, category: DowntimeCategory | None
                         ) -> dict[str | None, tuple[int, int, str | None]]:
        where, params = _downtime_where(start_ns, end_ns, line, _one(machine),
                                        None if category is None else str(category))
        params["now"] = now_ns

        def run(cur: sqlite3.Cursor) -> dict[str | None, tuple[int, int, str | None]]:
            sums: dict[str | None, list[Any]] = {}
            for code, n, us, first_ns, first_id, text in cur.execute(
                    BY_REASON.format(where=where), params):
                s = sums.get(code)
                if s is None:
                    sums[code] = [n, us, (first_ns, first_id), text]
                    continue
                s[0] += n
                s[1] += us
                if (first_ns, first_id) < s[2]:
                    s[2], s[3] = (first_ns, first_id), text
            return {code: (n, us, text) for code, (n, us, _, text) in sums.items()}

        return await self._tuples(run)

    async def _by_machine(self, start_ns: int, end_ns: int, now_ns: int,
                          machines: Sequence[str]) -> list[MachineTotal]:
        where, params = _downtime_where(start_ns, end_ns, None, machines, None)
        params["now"] = now_ns

        def run(cur: sqlite3.Cursor) -> list[MachineTotal]:
            return [MachineTotal(m, category_of(cat), bool(micro), bool(ended), n, us, neg)
                    for m, cat, micro, ended, n, us, neg in cur.execute(
                        BY_MACHINE.format(where=where), params)]

        return await self._tuples(run)

    async def _state_changes(self, machines: Sequence[str], start: datetime, end: datetime
                             ) -> dict[str, tuple[StateRow | None, list[StateRow]]]:
        s, e = check_range(start, end)
        cols = "SELECT ts_ns, state FROM state WHERE machine = ?"

        def run(cur: sqlite3.Cursor) -> dict[str, tuple[StateRow | None, list[StateRow]]]:
            out = {}
            for m in machines:  # as state_timeline reads them
                prior = cur.execute(cols + " AND ts_ns < ? ORDER BY ts_ns DESC LIMIT 1",
                                    [m, s]).fetchone()
                changes = cur.execute(cols + " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns",
                                      [m, s, e]).fetchall()
                out[m] = (None if prior is None else StateRow(*prior),
                          [StateRow(*r) for r in changes])
            return out

        return await self._tuples(run)

    async def get_downtime(self, id: str) -> DowntimeEvent | None:
        rows = await self._rows(DOWNTIME, "SELECT * FROM downtime WHERE id = ? LIMIT 1", [id])
        return downtime_from_row(rows[0], rows[0]["ts_ns"]) if rows else None

    async def code_downtime(
        self, id: str, reason_code: str, reason_text: str | None = None,
        note: str | None = None, *, by: str, at: datetime,
    ) -> tuple[DowntimeEvent, DowntimeEvent]:
        return await code_downtime_via(self, self.edit_sink, id, reason_code, reason_text,
                                       note, by=by, at=at)

    async def downtime_audit(self, id: str) -> list[AuditEntry]:
        rows = await self._rows(
            AUDIT, "SELECT * FROM downtime_audit WHERE downtime_id = ? ORDER BY ts_ns", [id])
        return [AuditEntry(id, r["by"], from_ns(r["ts_ns"]), downtime_from_json(r["before"]),
                           downtime_from_json(r["after"])) for r in rows]

    async def state_timeline(
        self, machine: str, start: datetime, end: datetime) -> list[StateInterval]:
        s, e = check_range(start, end)
        cols = "SELECT ts_ns, state, reason_code, reason_text FROM state WHERE machine = ?"

        def run(cur: sqlite3.Cursor) -> list[StateTuple]:
            rows = cur.execute(cols + " AND ts_ns < ? ORDER BY ts_ns DESC LIMIT 1",
                               [machine, s]).fetchall()
            return rows + cur.execute(cols + " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns",
                                      [machine, s, e]).fetchall()

        # The tuples as they are (no dict nor StateRow per row), made into intervals here on
        # the event loop while the reader thread reads the next machine.
        return build_timeline(await self._tuples(run), start, end, self._clock())

    async def counts(
        self, machine: str, start: datetime, end: datetime, every_s: int) -> list[CountBucket]:
        every = check_every(start, end, every_s)
        s, e = check_range(start, end)
        if (e - align(s, every)) // every > COUNT_RANGES_MAX:
            rows = await self._tuples(lambda cur: cur.execute(
                "SELECT ts_ns - (ts_ns % ?), coalesce(sum(good), 0), coalesce(sum(reject), 0) "
                "FROM parts WHERE machine = ? AND ts_ns >= ? AND ts_ns < ? GROUP BY 1",
                [every, machine, s, e]).fetchall())
        else:
            rows = await self._tuples(lambda cur: _count_ranges(cur, machine, s, e, every))
        return fill_counts({b: (good, reject) for b, good, reject in rows}, start, end, every)

    async def signal_series(
        self, machine: str, signal: str, start: datetime, end: datetime, every_s: int,
        agg: str = "mean",
    ) -> list[SeriesPoint]:
        check_agg(agg)
        every = check_every(start, end, every_s)
        s, e = check_range(start, end)
        where = ("WHERE machine = :machine AND signal = :signal AND ts_ns >= {lo} AND "
                 "ts_ns < {hi} AND quality != 'bad' AND value IS NOT NULL")
        params = {"every": every, "machine": machine, "signal": signal, "start": s, "end": e,
                  "first": align(s, every)}
        if agg == "last":
            # SQLite documents that a bare column next to max() comes from that row.
            rows = await self._rows(
                "sample", "SELECT ts_ns - (ts_ns % :every) AS b, value AS v, max(ts_ns) AS t "
                "FROM sample " + where.format(lo=":start", hi=":end")
                + " GROUP BY b ORDER BY b", params)
        else:
            # One aggregate per window, each a range of the primary key: three times faster
            # than GROUP BY over the computed window, which sorts every sample first.
            fn = {"mean": "avg", "min": "min", "max": "max"}[agg]
            rows = await self._rows(
                "sample", "WITH RECURSIVE w(b) AS (SELECT :first UNION ALL "
                "SELECT b + :every FROM w WHERE b + :every < :end) "
                f"SELECT b, (SELECT {fn}(value) FROM sample "
                + where.format(lo="max(b, :start)", hi="min(b + :every, :end)")
                + ") AS v FROM w", params)
        return [SeriesPoint(from_ns(r["b"]), float(r["v"])) for r in rows if r["v"] is not None]

    async def oee_snapshots(
        self, *, start: datetime, end: datetime, machine: str | None = None,
        line: str | None = None,
    ) -> list[OeeSnapshot]:
        s, e = check_range(start, end)
        if machine is None and line is None:
            raise ValueError("give a machine or a line")
        sql = "SELECT * FROM oee WHERE ts_ns >= ? AND ts_ns < ? AND machine = ?"
        params: list[Any] = [s, e, machine or ""]  # no machine: the line-level snapshots
        if line is not None:
            sql, params = sql + " AND line = ?", [*params, line]
        rows = await self._rows(OEE, sql + " ORDER BY ts_ns", params)
        return [oee_from_row(r, r["ts_ns"]) for r in rows]

    async def parts_produced(
        self, machine: str, start: datetime, end: datetime) -> list[PartsProduced]:
        s, e = check_range(start, end)
        rows = await self._rows(
            PARTS, "SELECT * FROM parts WHERE machine = ? AND ts_ns >= ? AND ts_ns < ? "
            "ORDER BY ts_ns", [machine, s, e])
        return [parts_from_row(r, r["ts_ns"]) for r in rows]
