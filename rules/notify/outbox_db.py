"""The outbox's SQLite side: one row per delivery, keyed by its idempotency key.

Runs on the outbox's own thread (outbox.py) with one connection in autocommit mode and
explicit transactions, WAL and `synchronous=FULL`: a delivery is on disk before the
dispatcher moves on, so a crash or a restart finds it again.

Order: within one incident, a recipient's messages go out in the order they were queued
(firing before resolved); a message whose predecessor is still pending waits for it.
Different incidents and recipients never wait for each other.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,          -- idempotency key: a second insert is ignored
    incident TEXT NOT NULL,
    transition TEXT NOT NULL,
    step INTEGER NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    address TEXT NOT NULL,
    line TEXT,
    fingerprints TEXT NOT NULL,        -- JSON array
    message TEXT NOT NULL,             -- JSON (rules.notify.message.Message)
    token_nonce TEXT,
    status TEXT NOT NULL,              -- pending, delivered, failed, cancelled
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,          -- unix seconds, from the injected clock
    next_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    receipt TEXT,
    link_used_at REAL,
    link_used_by TEXT);
CREATE INDEX IF NOT EXISTS delivery_due ON delivery(status, next_at);
CREATE INDEX IF NOT EXISTS delivery_order ON delivery(incident, channel, address, id);
CREATE INDEX IF NOT EXISTS delivery_nonce ON delivery(token_nonce);
CREATE TABLE IF NOT EXISTS incident(
    id TEXT PRIMARY KEY,
    open INTEGER NOT NULL,
    record TEXT NOT NULL,              -- JSON (rules.notify.incidents.IncidentRecord)
    updated_at REAL NOT NULL);
"""

COLUMNS = ("id, key, incident, transition, step, channel, recipient, address, line, "
           "fingerprints, message, token_nonce, status, attempts, created_at, next_at, "
           "delivered_at, last_error, receipt, link_used_at, link_used_by")

# A pending row not being sent (`?`: JSON array of busy ids) with no older pending row in
# its lane (incident, channel, address): the lane's head, the only one that may go.
READY = ("d.status='pending' AND d.id NOT IN (SELECT value FROM json_each(?)) "
         "AND NOT EXISTS (SELECT 1 FROM delivery e WHERE e.incident=d.incident "
         "AND e.channel=d.channel AND e.address=d.address AND e.status='pending' "
         "AND e.id<d.id)")


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    incident: str
    transition: str
    step: int
    channel: str
    recipient: str
    address: str
    line: str | None
    fingerprints: list[str]
    message: dict[str, Any]
    token_nonce: str | None
    status: str
    attempts: int
    created_at: float
    next_at: float
    delivered_at: float | None
    last_error: str | None
    receipt: str | None
    link_used_at: float | None
    link_used_by: str | None

    @classmethod
    def of(cls, r: tuple[Any, ...]) -> Row:
        values = list(r)
        values[9], values[10] = json.loads(values[9]), json.loads(values[10])
        return cls(*values)


class OutboxDb:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def _tx(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return cur

    def insert(self, rows: list[tuple[Any, ...]]) -> int:
        """INSERT OR IGNORE: a delivery already queued (same key) is not queued again."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO delivery(key, incident, transition, step, channel, "
                "recipient, address, line, fingerprints, message, token_nonce, status, "
                "created_at, next_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            added = self.conn.total_changes - before
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return added

    def due(self, now: float, limit: int, busy: list[int]) -> list[Row]:
        """Lane heads whose time has come, oldest first; rows being sent (`busy`) left out."""
        sql = f"SELECT {COLUMNS} FROM delivery d WHERE {READY} AND next_at<=? ORDER BY id LIMIT ?"
        return [Row.of(r) for r in self.conn.execute(sql, (json.dumps(busy), now, limit))]

    def next_at(self, busy: list[int]) -> float | None:
        """When the next row may go: the earliest lane head that is not in flight."""
        sql = f"SELECT min(next_at) FROM delivery d WHERE {READY}"
        return self.conn.execute(sql, (json.dumps(busy),)).fetchone()[0]

    def delivered(self, rid: int, now: float, receipt: str) -> None:
        self._tx("UPDATE delivery SET status='delivered', attempts=attempts+1, delivered_at=?, "
                 "receipt=?, last_error=NULL WHERE id=?", (now, receipt, rid))

    def retry(self, rid: int, next_at: float, error: str) -> None:
        self._tx("UPDATE delivery SET attempts=attempts+1, next_at=?, last_error=? "
                 "WHERE id=? AND status='pending'", (next_at, error, rid))

    def failed(self, rid: int, error: str) -> None:
        self._tx("UPDATE delivery SET status='failed', attempts=attempts+1, last_error=? "
                 "WHERE id=?", (error, rid))

    def cancel(self, incident: str, reason: str) -> int:
        cur = self._tx("UPDATE delivery SET status='cancelled', last_error=? WHERE incident=? "
                       "AND status='pending' AND transition='firing'", (reason, incident))
        return cur.rowcount

    def redeem(self, nonce: str, now: float, by: str) -> tuple[Row | None, bool]:
        """(the delivery, True if this call used the link; False if it was used before)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            found = self.conn.execute(
                f"SELECT {COLUMNS} FROM delivery WHERE token_nonce=?", (nonce,)).fetchone()
            fresh = found is not None and found[19] is None
            if fresh:
                self.conn.execute("UPDATE delivery SET link_used_at=?, link_used_by=? "
                                  "WHERE token_nonce=?", (now, by, nonce))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return (Row.of(found) if found else None), fresh

    def select(self, *, alert: str | None, status: str | None, line: str | None,
               lines: list[str] | None, channel: str | None, before: int | None,
               limit: int) -> list[Row]:
        where: list[str] = ["1=1"]
        params: list[Any] = []
        if alert is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(d.fingerprints) WHERE value=?)")
            params.append(alert)
        for column, value in (("status", status), ("line", line), ("channel", channel)):
            if value is not None:
                where.append(f"d.{column}=?")
                params.append(value)
        if lines is not None:
            where.append("d.line IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(lines))
        if before is not None:
            where.append("d.id<?")
            params.append(before)
        sql = f"SELECT {COLUMNS} FROM delivery d WHERE {' AND '.join(where)} ORDER BY id DESC " \
              "LIMIT ?"
        return [Row.of(r) for r in self.conn.execute(sql, (*params, limit))]

    def save_incidents(self, records: list[tuple[str, bool, str]], now: float) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT OR REPLACE INTO incident VALUES(?, ?, ?, ?)",
                                  [(i, int(o), r, now) for i, o, r in records])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def open_incidents(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT record FROM incident WHERE open=1 ORDER BY updated_at")
        return [json.loads(r) for (r,) in rows]

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM delivery GROUP BY status")
        return {status: n for status, n in rows}

    def prune(self, older_than: float) -> int:
        cur = self._tx("DELETE FROM delivery WHERE status!='pending' AND created_at<?",
                       (older_than,))
        self._tx("DELETE FROM incident WHERE open=0 AND updated_at<?", (older_than,))
        return cur.rowcount
