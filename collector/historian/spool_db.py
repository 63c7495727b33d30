"""The spool's SQLite side: tables, group-commit inserts, the drop policy, acks, quarantine.

Everything here runs on the spool's own thread (see spool.py) with one connection in
autocommit mode and explicit transactions; nothing here touches the event loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Row overhead charged to the byte budget on top of the line itself, so that max_bytes
# is close to what the file really takes.
RECORD_OVERHEAD = 48

SCHEMA = """
CREATE TABLE IF NOT EXISTS record(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids order the writes
    kind TEXT NOT NULL,                    -- 'sample' or 'event': decides the bucket
    priority INTEGER NOT NULL,             -- 1: never dropped
    ts_ns INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    lp TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS record_kind ON record(kind, id);
CREATE INDEX IF NOT EXISTS record_plain ON record(priority, id);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, lp TEXT NOT NULL, error TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Record:
    lp: str  # one line of line protocol
    kind: str = "sample"  # "sample" | "event" | "aggregate": decides the bucket
    priority: bool = False  # True: never dropped
    ts_ns: int = 0  # the point's timestamp, for the downsampler's horizon


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    id: int
    lp: str
    kind: str
    priority: bool
    ts_ns: int


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    id: int
    lp: str
    kind: str
    error: str
    quarantined_at: float  # unix seconds


@dataclass(slots=True)
class SpoolCounters:
    depth: int = 0
    bytes: int = 0
    appended: int = 0
    acked: int = 0
    quarantined: int = 0  # records now in quarantine
    dropped: dict[str, int] = field(default_factory=dict)
    over_budget: bool = False
    commits: int = 0


def _nbytes(lp: str) -> int:
    return len(lp.encode("utf-8", "surrogatepass")) + RECORD_OVERHEAD


class SpoolDb:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        self.conn.executescript(SCHEMA)
        self._lock = threading.Lock()  # counters are read from the event loop's thread
        self._c = SpoolCounters()
        depth, nbytes, top = self.conn.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0), coalesce(max(id), 0) FROM record"
        ).fetchone()
        seq = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='record'").fetchone()
        self.next_id = max(top, seq[0] if seq else 0) + 1
        self._c.depth, self._c.bytes = depth, nbytes
        self._c.quarantined = self.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        if depth:
            log.info("spool %s: %d records (%d bytes) left from before", path, depth, nbytes)

    def close(self) -> None:
        self.conn.close()

    def counters(self) -> SpoolCounters:
        with self._lock:
            return replace(self._c, dropped=dict(self._c.dropped))

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def insert(self, groups: list[list[Record]]) -> list[list[int]]:
        """One transaction (one fsync) for all groups; enforces the byte budget."""
        rows, results, added, next_id = [], [], 0, self.next_id
        for records in groups:
            ids = []
            for r in records:
                nbytes = _nbytes(r.lp)
                rows.append((next_id, r.kind, int(r.priority), r.ts_ns, nbytes, r.lp))
                ids.append(next_id)
                next_id += 1
                added += nbytes
            results.append(ids)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT INTO record VALUES(?, ?, ?, ?, ?, ?)", rows)
            dropped, freed, over = self._enforce_budget(self._c.bytes + added)
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self.next_id = next_id
        with self._lock:
            c = self._c
            c.depth += len(rows) - dropped
            c.bytes += added - freed
            c.appended += len(rows)
            c.commits += 1
            c.over_budget = over
            if dropped:
                c.dropped["spool_full"] = c.dropped.get("spool_full", 0) + dropped
        if dropped:
            log.warning("spool over %d bytes: dropped %d oldest samples", self.max_bytes, dropped)
        return results

    def _enforce_budget(self, total: int) -> tuple[int, int, bool]:
        """Delete the oldest plain records until under budget; (dropped, bytes freed, over)."""
        excess = total - self.max_bytes
        if excess <= 0:
            return 0, 0, False
        freed = dropped = 0
        cutoff = None
        cur = self.conn.execute("SELECT id, nbytes FROM record WHERE priority=0 ORDER BY id")
        for rid, nbytes in cur:
            freed += nbytes
            dropped += 1
            cutoff = rid
            if freed >= excess:
                break
        cur.close()
        if cutoff is not None:
            self.conn.execute("DELETE FROM record WHERE priority=0 AND id<=?", (cutoff,))
        return dropped, freed, freed < excess

    def peek(self, limit: int, kind: str | None, min_id: int, max_id: int | None
             ) -> list[SpooledRecord]:
        sql = "SELECT id, lp, kind, priority, ts_ns FROM record WHERE id>=? AND id<=?"
        params: list[Any] = [min_id, max_id if max_id is not None else self.next_id]
        if kind is not None:
            sql += " AND kind=?"
            params.append(kind)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [SpooledRecord(i, lp, k, bool(p), ts)
                for i, lp, k, p, ts in self.conn.execute(sql, params)]

    def _delete(self, ids: Sequence[int]) -> tuple[int, int]:
        # One statement for the whole batch (a JSON array of ids), not one per id.
        rows = self.conn.execute(
            "DELETE FROM record WHERE id IN (SELECT value FROM json_each(?)) RETURNING nbytes",
            (json.dumps(list(ids)),)).fetchall()
        return len(rows), sum(n for (n,) in rows)

    def ack(self, ids: Sequence[int]) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        count, nbytes = self._delete(ids)
        self.conn.execute("COMMIT")
        with self._lock:
            self._c.depth -= count
            self._c.bytes -= nbytes
            self._c.acked += count
            self._c.over_budget = self._c.over_budget and self._c.bytes > self.max_bytes
        return count

    def quarantine(self, items: Sequence[tuple[int, str]]) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        for rid, error in items:
            self.conn.execute(
                "INSERT OR REPLACE INTO quarantine SELECT id, kind, priority, ts_ns, lp, ?, ? "
                "FROM record WHERE id=?", (error, now, rid))
        count, nbytes = self._delete([rid for rid, _ in items])
        self.conn.execute("COMMIT")
        with self._lock:
            self._c.depth -= count
            self._c.bytes -= nbytes
            self._c.quarantined += count
        return count

    def list_quarantine(self, limit: int) -> list[QuarantinedRecord]:
        rows = self.conn.execute(
            "SELECT id, lp, kind, error, at FROM quarantine ORDER BY id LIMIT ?", (limit,))
        return [QuarantinedRecord(*row) for row in rows]

    def retry_quarantine(self, ids: Sequence[int] | None) -> list[int]:
        rows = self.conn.execute(
            "SELECT id, kind, priority, ts_ns, lp FROM quarantine ORDER BY id").fetchall()
        if ids is not None:
            wanted = set(ids)
            rows = [r for r in rows if r[0] in wanted]
        self.conn.execute("BEGIN IMMEDIATE")
        new_ids, added = [], 0
        for qid, kind, priority, ts_ns, lp in rows:
            self.conn.execute("INSERT INTO record VALUES(?, ?, ?, ?, ?, ?)",
                              (self.next_id, kind, priority, ts_ns, _nbytes(lp), lp))
            self.conn.execute("DELETE FROM quarantine WHERE id=?", (qid,))
            new_ids.append(self.next_id)
            self.next_id += 1
            added += _nbytes(lp)
        self.conn.execute("COMMIT")
        with self._lock:
            self._c.depth += len(new_ids)
            self._c.bytes += added
            self._c.quarantined -= len(new_ids)
        return new_ids

    def remaining(self, ids: Sequence[int] | None, max_id: int) -> int:
        if ids is None:
            sql = "SELECT count(*) FROM record WHERE id<=?"
            return self.conn.execute(sql, (max_id,)).fetchone()[0]
        return sum(self.conn.execute("SELECT count(*) FROM record WHERE id=?", (i,)).fetchone()[0]
                   for i in ids)

    def any_left(self, ids: Sequence[int] | None, max_id: int) -> bool:
        if ids is None:
            sql = "SELECT 1 FROM record WHERE id<=? LIMIT 1"  # cheap even with a big backlog
            return self.conn.execute(sql, (max_id,)).fetchone() is not None
        return self.remaining(ids, max_id) > 0

    def oldest_ts(self, kind: str) -> int | None:
        sql = "SELECT min(ts_ns) FROM record WHERE kind=?"
        return self.conn.execute(sql, (kind,)).fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))
