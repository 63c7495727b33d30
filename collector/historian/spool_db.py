"""The spool's SQLite side: tables, group-commit inserts, the drop policy, acks, quarantine.

Everything here runs on the spool's own thread (see spool.py) with one connection in
autocommit mode and explicit transactions; nothing here touches the event loop.

Storage: one `chunk` row per run of consecutive records of one kind and priority (a put,
or several puts of one group commit), not one row per record: a row per record cost
~11 µs of SQL per sample (insert, read, delete with two indexes), a chunk costs that
per batch. Records keep their own ids (contiguous within a chunk: first_id..last_id),
so callers still peek, ack and quarantine single records. A chunk row is never
rewritten (its text can be large): records removed from a chunk that still holds others
are marked in the small `gone` row of that chunk, and the chunk and its `gone` row are
deleted together when its last record goes.

Each line in a chunk's text is followed by a LF, so that a run of records is already the
body of a write request: `peek_batch` hands the forwarder one text per batch (see
linebatch.py) instead of a `str` and a record object per record. Chunks written before
that (no LF, and `meta` one byte shorter) are converted when the spool is opened; the
longer `meta` also makes an older linemon fail loudly on a newer chunk instead of misreading
it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import sys
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from .linebatch import LineBatch

log = logging.getLogger(__name__)

# Overhead charged to the byte budget per record on top of the line itself. It was the
# cost of a row per record; it is kept so that a configured max_bytes holds no more
# records than before (a chunk costs less, so the file stays below the budget).
RECORD_OVERHEAD = 48

# Records per chunk at most: bounds what a peek or a partial ack must decode to reach
# one record. A typical source batch (up to 1,000) is one chunk.
CHUNK_MAX = 1000

# SQLite's page cache for the spool, KiB (its default is 2,000). The spool reads each page
# about once (appends at the tail, peeks and deletes at the head), and the OS caches the
# file anyway; a larger cache only filled up, step by step with each new backlog peak, and
# stayed: session 12 saw SQLite's memory go 0.9 -> 1.3 MiB in 12 minutes of a steady load.
CACHE_KIB = 512

# Last byte of a chunk's `meta` when its lines end with a LF. Per chunk, not a mark for
# the file: an older linemon run on the file meanwhile writes chunks without it.
LF_FORMAT = b"\n"
_LITTLE_ENDIAN = sys.byteorder == "little"
assert array("I").itemsize == 4 and array("q").itemsize == 8  # meta's "<I" and "<q"

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk(
    last_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- id of its last record; AUTOINCREMENT keeps
                                                -- the highest id ever used: ids never reused
    first_id INTEGER NOT NULL,                  -- its records have ids first_id..last_id
    kind TEXT NOT NULL,                         -- 'sample', 'event'...: decides the bucket
    priority INTEGER NOT NULL,                  -- 1: never dropped
    min_ts INTEGER NOT NULL,                    -- oldest ts_ns of its records
    nbytes INTEGER NOT NULL,                    -- budget bytes of all its records
    meta BLOB NOT NULL,                         -- per record: int64 ts_ns, then uint32 end of
                                                -- its line and LF in lp (lines may hold a LF);
                                                -- then LF_FORMAT
    lp TEXT NOT NULL);                          -- the lines, each followed by a LF
CREATE INDEX IF NOT EXISTS chunk_kind ON chunk(kind, last_id);
CREATE INDEX IF NOT EXISTS chunk_plain ON chunk(priority, last_id);
CREATE TABLE IF NOT EXISTS gone(                -- records already removed from a chunk
    last_id INTEGER PRIMARY KEY,                -- the chunk's
    mask BLOB NOT NULL,                         -- bit i (little-endian): first_id+i is gone
    count INTEGER NOT NULL,                     -- how many are gone
    nbytes INTEGER NOT NULL,                    -- and their budget bytes
    min_ts INTEGER NOT NULL);                   -- oldest ts_ns of the records left
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, lp TEXT NOT NULL, error TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A chunk's state without its payload; `_STATE + WHERE ...` reads rows for _Chunk.
_STATE = ("SELECT c.first_id, c.last_id, c.kind, c.priority, c.nbytes, g.mask, g.count, "
          "g.nbytes FROM chunk c LEFT JOIN gone g USING(last_id) ")


# Not frozen, as linemon.model.Sample and for the same reason: one is made per sample.
@dataclass(slots=True, unsafe_hash=True)
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


@dataclass(slots=True)
class SpoolBatch:
    """Spooled records as the forwarder writes them: ids ascending, with the timestamp and
    the line of each, in arrays and one text rather than an object per record."""

    ids: array[int] = field(default_factory=lambda: array("q"))
    ts_ns: array[int] = field(default_factory=lambda: array("q"))
    lines: LineBatch = field(default_factory=LineBatch)

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, at: int) -> tuple[SpoolBatch, SpoolBatch]:
        """(records before `at`, records from `at` on)."""
        head, tail = self.lines.split(at)
        return (SpoolBatch(self.ids[:at], self.ts_ns[:at], head),
                SpoolBatch(self.ids[at:], self.ts_ns[at:], tail))

    @classmethod
    def join(cls, batches: Sequence[SpoolBatch]) -> SpoolBatch:
        """One batch of several, in the order given: their ids must ascend across them, as
        an ack of the batch takes them as they are (ValueError otherwise)."""
        nonempty = [b for b in batches if len(b)]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else cls()
        for a, b in pairwise(nonempty):
            if a.ids[-1] >= b.ids[0]:
                raise ValueError(f"batch ids {a.ids[-1]} then {b.ids[0]}: not ascending")
        ids, ts = array("q"), array("q")
        for b in nonempty:
            ids.extend(b.ids)
            ts.extend(b.ts_ns)
        return cls(ids, ts, LineBatch.join(b.lines for b in nonempty))


@dataclass(slots=True)
class _Run:
    """Consecutive live records lo..hi (offsets) of one chunk, as peeks return them."""

    first: int
    kind: str
    priority: bool
    text: str
    ts: array[int]
    ends: array[int]
    lo: int
    hi: int


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


@dataclass(slots=True)
class _Chunk:
    """A chunk row's state (not its lines) and what is already gone from it."""

    first: int
    last: int
    kind: str
    priority: int
    nbytes: int  # of all its records
    mask: int  # bit i: record first+i is gone
    gone: int
    gone_bytes: int

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Chunk:
        first, last, kind, priority, nbytes, mask, gone, gone_bytes = row
        return cls(first, last, kind, priority, nbytes,
                   int.from_bytes(mask, "little") if mask else 0, gone or 0, gone_bytes or 0)

    def live(self, offset: int) -> bool:
        return not (self.mask >> offset) & 1

    def live_upto(self, rid: int) -> int:
        """How many of its records with id <= rid are still here."""
        n = min(rid, self.last) - self.first + 1
        return 0 if n <= 0 else n - (self.mask & ((1 << n) - 1)).bit_count()


def _nbytes(lp: str) -> int:
    return len(lp.encode("utf-8", "surrogatepass")) + RECORD_OVERHEAD


def _line(text: str, ends: Sequence[int], offset: int) -> str:
    """Record `offset`'s line out of a chunk's text, without its LF."""
    return text[ends[offset - 1] if offset else 0:ends[offset] - 1]


def _pack(ts: Sequence[int], ends: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(ts)}q{len(ends)}I", *ts, *ends) + LF_FORMAT


def _unpack(meta: bytes, n: int, lf: bool = True) -> tuple[array[int], array[int]]:
    """(ts_ns per record, end of each record's line in the chunk's text, after its LF if
    `lf`), as arrays: a peek reads every chunk it touches, and tuples would make two int
    objects per record."""
    if len(meta) != 12 * n + lf or (lf and meta[-1:] != LF_FORMAT):
        raise sqlite3.DatabaseError(f"spool chunk of {n} records: {len(meta)} bytes of meta")
    ts, ends = array("q"), array("I")
    ts.frombytes(meta[:8 * n])
    ends.frombytes(meta[8 * n:12 * n])
    if not _LITTLE_ENDIAN:
        ts.byteswap()
        ends.byteswap()
    return ts, ends


def _chunk_rows(records: Sequence[Record], first_id: int) -> tuple[list[tuple[Any, ...]], int]:
    """Chunk rows for records taking ids from first_id on; (rows, their budget bytes).

    A chunk holds one run of records with the same kind and priority, so ids stay in the
    order of `records` (callers rely on it: an edit must land after the event it edits)."""
    rows: list[tuple[Any, ...]] = []
    added, i, n = 0, 0, len(records)
    while i < n:
        kind, priority = records[i].kind, records[i].priority
        j, stop = i + 1, min(n, i + CHUNK_MAX)
        while j < stop and records[j].kind == kind and records[j].priority == priority:
            j += 1
        lines = [r.lp for r in records[i:j]]
        ts = [r.ts_ns for r in records[i:j]]
        lines.append("")  # the last line's LF, without copying the text again
        text = "\n".join(lines)
        lines.pop()
        # The LFs are not charged: the budget counts each line and RECORD_OVERHEAD.
        nbytes = len(text.encode("utf-8", "surrogatepass")) + (RECORD_OVERHEAD - 1) * (j - i)
        last = first_id + j - i - 1
        ends = [end + i for i, end in enumerate(accumulate(map(len, lines)), 1)]
        rows.append((last, first_id, kind, int(priority), min(ts), nbytes, _pack(ts, ends),
                     text))
        added += nbytes
        first_id, i = last + 1, j
    return rows, added


class SpoolDb:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        self.conn.execute(f"PRAGMA cache_size={-CACHE_KIB}")
        self.conn.executescript(SCHEMA)
        self._end_lines_with_lf(path)
        self._migrate(path)
        self._lock = threading.Lock()  # counters are read from the event loop's thread
        self._c = SpoolCounters()
        depth, nbytes, top = self.conn.execute(
            "SELECT coalesce(sum(c.last_id - c.first_id + 1 - coalesce(g.count, 0)), 0), "
            "coalesce(sum(c.nbytes - coalesce(g.nbytes, 0)), 0), coalesce(max(c.last_id), 0) "
            "FROM chunk c LEFT JOIN gone g USING(last_id)").fetchone()
        seq = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='chunk'").fetchone()
        self.next_id = max(top, seq[0] if seq else 0) + 1
        self._c.depth, self._c.bytes = depth, nbytes
        self._c.quarantined = self.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        if depth:
            log.info("spool %s: %d records (%d bytes) left from before", path, depth, nbytes)

    def _end_lines_with_lf(self, path: Path) -> None:
        """Give every line of the chunks written without LF_FORMAT its LF, in one
        transaction: a crash leaves them as they were, and a chunk is only converted once."""
        old = "length(meta) = 12 * (last_id - first_id + 1)"
        if self.conn.execute(f"SELECT 1 FROM chunk WHERE {old} LIMIT 1").fetchone() is None:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            converted, after = 0, -1
            while True:  # in pages: a chunk is not changed under a running SELECT
                rows = self.conn.execute(
                    f"SELECT last_id, first_id, meta, lp FROM chunk WHERE last_id>? AND {old} "
                    "ORDER BY last_id LIMIT 100", (after,)).fetchall()
                if not rows:
                    break
                for last, first, meta, text in rows:
                    ts, ends = _unpack(meta, last - first + 1, lf=False)
                    starts = [0, *ends[:-1]]
                    lines = [text[a:b] for a, b in zip(starts, ends, strict=True)]
                    new_ends = [end + i + 1 for i, end in enumerate(ends)]
                    self.conn.execute("UPDATE chunk SET meta=?, lp=? WHERE last_id=?",
                                      (_pack(ts, new_ends), "\n".join(lines) + "\n", last))
                    converted += 1
                after = rows[-1][0]
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        log.info("spool %s: %d chunks converted to lines ended by LF", path, converted)

    def _migrate(self, path: Path) -> None:
        """Move the records of a spool written with a row per record (table `record`) into
        chunks, keeping their ids, in one transaction: a crash leaves the old table intact."""
        old = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='record'"
        if self.conn.execute(old).fetchone() is None:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            seq = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name='record'").fetchone()
            top = seq[0] if seq else 0
            moved = 0
            run: list[Record] = []
            run_first = 0

            def flush() -> None:
                rows, _ = _chunk_rows(run, run_first)
                self.conn.executemany("INSERT INTO chunk VALUES(?, ?, ?, ?, ?, ?, ?, ?)", rows)

            cur = self.conn.execute("SELECT id, kind, priority, ts_ns, lp FROM record ORDER BY id")
            for rid, kind, priority, ts_ns, lp in cur:
                rec = Record(lp, kind, bool(priority), ts_ns)
                if run and (rid != run_first + len(run) or len(run) == CHUNK_MAX  # ids contiguous
                            or (kind, rec.priority) != (run[0].kind, run[0].priority)):
                    flush()
                    run = []
                if not run:
                    run_first = rid
                run.append(rec)
                moved += 1
                top = max(top, rid)
            if run:
                flush()
            self.conn.execute("DROP TABLE record")  # its sqlite_sequence row goes with it
            # Ids acked before the upgrade must not be handed out again either.
            if not self.conn.execute("UPDATE sqlite_sequence SET seq=max(seq, ?) "
                                     "WHERE name='chunk'", (top,)).rowcount:
                self.conn.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('chunk', ?)",
                                  (top,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        log.info("spool %s: moved %d records to the chunked format", path, moved)

    def close(self) -> None:
        self.conn.close()

    def counters(self) -> SpoolCounters:
        with self._lock:
            return replace(self._c, dropped=dict(self._c.dropped))

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # --- writes -----------------------------------------------------------------------

    def insert(self, groups: list[list[Record]]) -> list[list[int]]:
        """One transaction (one fsync) for all groups; enforces the byte budget."""
        results: list[list[int]] = []
        flat: list[Record] = []
        next_id = self.next_id
        for records in groups:  # the puts of one commit share chunks: their ids are contiguous
            results.append(list(range(next_id, next_id + len(records))))
            next_id += len(records)
            flat.extend(records)
        rows, added = _chunk_rows(flat, self.next_id)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT INTO chunk VALUES(?, ?, ?, ?, ?, ?, ?, ?)", rows)
            dropped, freed, over = self._enforce_budget(self._c.bytes + added)
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self.next_id = next_id
        with self._lock:
            c = self._c
            c.depth += len(flat) - dropped
            c.bytes += added - freed
            c.appended += len(flat)
            c.commits += 1
            c.over_budget = over
            if dropped:
                c.dropped["spool_full"] = c.dropped.get("spool_full", 0) + dropped
        if dropped:
            log.warning("spool over %d bytes: dropped %d oldest samples", self.max_bytes, dropped)
        return results

    def _enforce_budget(self, total: int) -> tuple[int, int, bool]:
        """Drop the oldest plain records until under budget; (dropped, bytes freed, over).

        Whole chunks while they fit in the excess, then the oldest records of the next
        one, so that exactly as many records go as with a row per record."""
        excess = total - self.max_bytes
        if excess <= 0:
            return 0, 0, False
        victims: list[_Chunk] = []
        need = excess
        cur = self.conn.execute(_STATE + "WHERE c.priority=0 ORDER BY c.last_id")
        for row in cur:  # read first: changing a table under a running SELECT is undefined
            ch = _Chunk.of(row)
            victims.append(ch)
            need -= ch.nbytes - ch.gone_bytes
            if need <= 0:
                break
        cur.close()
        freed = dropped = 0
        for ch in victims:
            if freed + ch.nbytes - ch.gone_bytes <= excess:
                offsets = [o for o in range(ch.last - ch.first + 1) if ch.live(o)]
            else:
                text, _, ends = self._payload(ch.last)
                offsets, need = [], excess - freed
                for o in range(ch.last - ch.first + 1):
                    if ch.live(o):
                        offsets.append(o)
                        need -= _nbytes(_line(text, ends, o))
                        if need <= 0:
                            break
            n, b = self._remove_from(ch, offsets)
            dropped, freed = dropped + n, freed + b
            if freed >= excess:
                break
        return dropped, freed, freed < excess

    def _payload(self, last_id: int) -> tuple[str, array[int], array[int]]:
        """A chunk's (text, ts_ns per record, end of each line in text)."""
        first, meta, text = self.conn.execute(
            "SELECT first_id, meta, lp FROM chunk WHERE last_id=?", (last_id,)).fetchone()
        ts, ends = _unpack(meta, last_id - first + 1)
        return text, ts, ends

    def _remove_from(self, ch: _Chunk, offsets: Sequence[int]) -> tuple[int, int]:
        """Remove records (offsets in the chunk, all live); (how many, their bytes)."""
        n = ch.last - ch.first + 1
        if not offsets:
            return 0, 0
        if ch.gone + len(offsets) == n:  # its last records: the chunk goes
            self.conn.execute("DELETE FROM chunk WHERE last_id=?", (ch.last,))
            if ch.gone:
                self.conn.execute("DELETE FROM gone WHERE last_id=?", (ch.last,))
            freed = ch.nbytes - ch.gone_bytes
            ch.mask = (1 << n) - 1
        else:  # mark them in its `gone` row; the chunk row is left as it is
            text, ts, ends = self._payload(ch.last)
            freed = 0
            for o in offsets:
                ch.mask |= 1 << o
                freed += _nbytes(_line(text, ends, o))
            mask = ch.mask
            min_ts = min(t for o, t in enumerate(ts) if not (mask >> o) & 1)
            self.conn.execute("INSERT OR REPLACE INTO gone VALUES(?, ?, ?, ?, ?)",
                              (ch.last, ch.mask.to_bytes((n + 7) // 8, "little"),
                               ch.gone + len(offsets), ch.gone_bytes + freed, min_ts))
        ch.gone += len(offsets)
        ch.gone_bytes += freed
        return len(offsets), freed

    def _chunk_at(self, rid: int) -> _Chunk | None:
        """The chunk holding id rid, or else the first one after it (None: none after)."""
        row = self.conn.execute(_STATE + "WHERE c.last_id>=? ORDER BY c.last_id LIMIT 1",
                                (rid,)).fetchone()
        return None if row is None else _Chunk.of(row)

    def _locate(self, ids: Sequence[int], ascending: bool = False
                ) -> Iterator[tuple[_Chunk, Sequence[int]]]:
        """(chunk, offsets of its live records among ids) for every chunk that holds some.

        One query per chunk touched, not per id: acks come in runs of consecutive ids.
        `ascending`: ids already ascend without repeats (a batch's), so are used as given."""
        if not ascending:
            ids = sorted(set(ids))
        i = 0
        while i < len(ids):
            ch = self._chunk_at(ids[i])
            if ch is None:
                return
            i = bisect_left(ids, ch.first, i)  # ids before it are not spooled
            j = bisect_right(ids, ch.last, i)
            offsets: Sequence[int]
            if ch.mask:
                offsets = [rid - ch.first for rid in ids[i:j] if ch.live(rid - ch.first)]
            elif i < j and ids[j - 1] - ids[i] == j - i - 1:  # a run, the usual ack
                offsets = range(ids[i] - ch.first, ids[j - 1] - ch.first + 1)
            else:
                offsets = [rid - ch.first for rid in ids[i:j]]
            if offsets:
                yield ch, offsets
            i = j

    def _remove(self, ids: Sequence[int], ascending: bool = False) -> tuple[int, int]:
        count = nbytes = 0
        # all read before anything is changed
        for ch, offsets in list(self._locate(ids, ascending)):
            n, b = self._remove_from(ch, offsets)
            count, nbytes = count + n, nbytes + b
        return count, nbytes

    def ack(self, ids: Sequence[int], ascending: bool = False) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        count, nbytes = self._remove(ids, ascending)
        self.conn.execute("COMMIT")
        with self._lock:
            self._c.depth -= count
            self._c.bytes -= nbytes
            self._c.acked += count
            self._c.over_budget = self._c.over_budget and self._c.bytes > self.max_bytes
        return count

    def quarantine(self, items: Sequence[tuple[int, str]]) -> int:
        errors = dict(items)  # the last error given for an id wins
        self.conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        rows = []
        for ch, offsets in list(self._locate(list(errors))):
            text, ts, ends = self._payload(ch.last)
            for o in offsets:
                rid = ch.first + o
                rows.append((rid, ch.kind, ch.priority, ts[o], _line(text, ends, o), errors[rid],
                             now))
        self.conn.executemany("INSERT OR REPLACE INTO quarantine VALUES(?, ?, ?, ?, ?, ?, ?)",
                              rows)
        count, nbytes = self._remove([r[0] for r in rows])
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
        records = [Record(lp, kind, bool(priority), ts_ns) for _, kind, priority, ts_ns, lp in rows]
        chunks, added = _chunk_rows(records, self.next_id)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO chunk VALUES(?, ?, ?, ?, ?, ?, ?, ?)", chunks)
        self.conn.execute("DELETE FROM quarantine WHERE id IN (SELECT value FROM json_each(?))",
                          (json.dumps([r[0] for r in rows]),))
        self.conn.execute("COMMIT")
        new_ids = list(range(self.next_id, self.next_id + len(records)))
        self.next_id += len(records)
        with self._lock:
            self._c.depth += len(new_ids)
            self._c.bytes += added
            self._c.quarantined -= len(new_ids)
        return new_ids

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    # --- reads ------------------------------------------------------------------------

    def peek(self, limit: int, kind: str | None, min_id: int, max_id: int | None
             ) -> list[SpooledRecord]:
        out: list[SpooledRecord] = []
        for run in self._live_runs(limit, kind, min_id, max_id):
            start = run.ends[run.lo - 1] if run.lo else 0
            for o in range(run.lo, run.hi + 1):
                end = run.ends[o]
                out.append(SpooledRecord(run.first + o, run.text[start:end - 1], run.kind,
                                         run.priority, run.ts[o]))
                start = end
        return out

    def peek_batch(self, limit: int, kind: str | None, min_id: int, max_id: int | None
                   ) -> SpoolBatch:
        """What peek returns, as one text and arrays (see SpoolBatch)."""
        batch = SpoolBatch()
        texts: list[str] = []
        ends = batch.lines.ends
        size = 0
        for run in self._live_runs(limit, kind, min_id, max_id):
            start = run.ends[run.lo - 1] if run.lo else 0
            stop = run.ends[run.hi]
            whole = start == 0 and stop == len(run.text)
            texts.append(run.text if whole else run.text[start:stop])
            shift = size - start
            ends.extend(end + shift for end in run.ends[run.lo:run.hi + 1])
            batch.ids.extend(range(run.first + run.lo, run.first + run.hi + 1))
            batch.ts_ns.extend(run.ts[run.lo:run.hi + 1])
            size += stop - start
        batch.lines.text = "".join(texts)
        return batch

    def _live_runs(self, limit: int, kind: str | None, min_id: int, max_id: int | None
                   ) -> Iterator[_Run]:
        """The oldest `limit` live records in [min_id, max_id] (of `kind`), in id order, as
        runs of consecutive records of one chunk."""
        top = self.next_id if max_id is None else max_id
        if limit <= 0 or min_id > top:
            return
        sql = ("SELECT c.first_id, c.last_id, c.kind, c.priority, c.meta, c.lp, g.mask "
               "FROM chunk c LEFT JOIN gone g USING(last_id) WHERE c.last_id>=?")
        params: list[Any] = [min_id]
        if kind is not None:
            sql += " AND c.kind=?"
            params.append(kind)
        cur = self.conn.execute(sql + " ORDER BY c.last_id", params)
        left = limit
        try:
            for first, last, k, priority, meta, text, mask_blob in cur:
                if first > top:  # chunks are in id order and never overlap: nothing further
                    return
                ts, ends = _unpack(meta, last - first + 1)
                mask = int.from_bytes(mask_blob, "little") if mask_blob else 0
                o, hi = max(min_id, first) - first, min(top, last) - first
                while o <= hi:
                    if (mask >> o) & 1:
                        o += 1
                        continue
                    end = min(hi, o + left - 1)
                    if mask:  # the run stops before the next record already gone
                        stop = end
                        end = o
                        while end < stop and not (mask >> (end + 1)) & 1:
                            end += 1
                    yield _Run(first, k, bool(priority), text, ts, ends, o, end)
                    left -= end - o + 1
                    if not left:
                        return
                    o = end + 1
        finally:
            cur.close()

    def remaining(self, ids: Sequence[int] | None, max_id: int) -> int:
        if ids is not None:
            return sum(len(offsets) for _, offsets in self._locate(ids))
        # Chunks wholly at or below max_id, plus the part of the one that straddles it.
        whole = self.conn.execute(
            "SELECT coalesce(sum(c.last_id - c.first_id + 1 - coalesce(g.count, 0)), 0) "
            "FROM chunk c LEFT JOIN gone g USING(last_id) WHERE c.last_id<=?",
            (max_id,)).fetchone()[0]
        ch = self._chunk_at(max_id + 1)
        return whole + (ch.live_upto(max_id) if ch is not None else 0)

    def any_left(self, ids: Sequence[int] | None, max_id: int) -> bool:
        if ids is not None:
            return next(self._locate(ids), None) is not None
        # Cheap even with a big backlog: chunks never overlap and always hold a record, so
        # the oldest chunk decides.
        ch = self._chunk_at(0)
        return ch is not None and ch.live_upto(max_id) > 0

    def oldest_ts(self, kind: str) -> int | None:
        sql = ("SELECT min(coalesce(g.min_ts, c.min_ts)) FROM chunk c "
               "LEFT JOIN gone g USING(last_id) WHERE c.kind=?")
        return self.conn.execute(sql, (kind,)).fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]
