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

from linemon.model import DowntimeEvent, PartsProduced

from ..config import SqliteBackendConfig
from ..lineprotocol import LineProtocolError, parse_line
from ..query import (
    AuditEntry,
    CountBucket,
    DowntimeReads,
    HistoryUnavailable,
    SeriesPoint,
    StateInterval,
    StateRow,
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
    downtime_from_json,
    downtime_from_row,
    from_ns,
    oee_from_row,
    parts_from_row,
)
from . import sqlite_tables as tables
from .base import StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)
R = TypeVar("R")
PRUNE_EVERY_S = 3600.0


class SqliteStore(DowntimeReads):
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

    async def write(self, kind: str, lines: Sequence[str]) -> None:
        try:
            points = [parse_line(line) for line in lines]
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

    async def _rows(self, m: str, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return [tables.row_dict(m, r) for r in self._reader().execute(sql, params)]

        try:
            return await self._on(self._rpool, run)
        except StoreUnavailable as err:
            raise HistoryUnavailable(str(err)) from err

    # --- HistoryQuery ---------------------------------------------------------------

    async def _downtime(self, start: datetime, end: datetime, line: str | None,
                        machine: str | None) -> list[DowntimeEvent]:
        s, e = check_range(start, end)
        sql, params = "SELECT * FROM downtime WHERE ts_ns >= ? AND ts_ns < ?", [s, e]
        if machine is not None:
            sql, params = sql + " AND machine = ?", [*params, machine]
        if line is not None:
            sql, params = sql + " AND line = ?", [*params, line]
        rows = await self._rows(DOWNTIME, sql, params)
        return [downtime_from_row(r, r["ts_ns"]) for r in rows]

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
        prior = await self._rows(
            "state", cols + " AND ts_ns < ? ORDER BY ts_ns DESC LIMIT 1", [machine, s])
        changes = await self._rows(
            "state", cols + " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns", [machine, s, e])

        def row(r: dict[str, Any]) -> StateRow:
            return StateRow(r["ts_ns"], r["state"], r["reason_code"], r["reason_text"])

        return build_timeline(row(prior[0]) if prior else None, [row(r) for r in changes],
                              start, end, self._clock())

    async def counts(
        self, machine: str, start: datetime, end: datetime, every_s: int) -> list[CountBucket]:
        every = check_every(start, end, every_s)
        s, e = check_range(start, end)
        rows = await self._rows(
            "parts",
            "SELECT ts_ns - (ts_ns % ?) AS b, coalesce(sum(good), 0) AS good, "
            "coalesce(sum(reject), 0) AS reject FROM parts "
            "WHERE machine = ? AND ts_ns >= ? AND ts_ns < ? GROUP BY b",
            [every, machine, s, e])
        return fill_counts({r["b"]: (r["good"], r["reject"]) for r in rows}, start, end, every)

    async def signal_series(
        self, machine: str, signal: str, start: datetime, end: datetime, every_s: int,
        agg: str = "mean",
    ) -> list[SeriesPoint]:
        check_agg(agg)
        every = check_every(start, end, every_s)
        s, e = check_range(start, end)
        # For "last", SQLite documents that a bare column next to max() comes from that row.
        expr = {"mean": "avg(value) AS v", "min": "min(value) AS v", "max": "max(value) AS v",
                "last": "value AS v, max(ts_ns) AS t"}[agg]
        rows = await self._rows(
            "sample",
            f"SELECT ts_ns - (ts_ns % ?) AS b, {expr} FROM sample "
            "WHERE machine = ? AND signal = ? AND ts_ns >= ? AND ts_ns < ? "
            "AND quality != 'bad' AND value IS NOT NULL GROUP BY b ORDER BY b",
            [every, machine, signal, s, e])
        return [SeriesPoint(from_ns(r["b"]), float(r["v"])) for r in rows]

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
