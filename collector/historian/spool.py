"""The durable spool: every sample and event is on disk before anyone is told it is stored.

SQLite in WAL mode with `synchronous=FULL` (spool_db.py), owned by one dedicated thread
so the event loop never blocks on disk. `put()` uses group commit: all puts waiting when
the thread becomes free go into one transaction and one fsync, at most one commit every
COMMIT_EVERY_S, and each `put()` returns only after the commit that holds its records (the
MQTT collector sends PUBACK after that; its in-flight window covers the wait).

Records leave the spool only by `ack()` (the store answered 2xx), `quarantine()` (the store
rejected the point itself) or the drop policy: when the payload bytes exceed `max_bytes`,
the oldest *plain* records (priority False: samples) are deleted first and counted as
dropped["spool_full"]. Priority records (state changes, downtime and every other event)
are never dropped; if they alone exceed the budget the spool grows and reports
`over_budget` so the health check raises an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .spool_db import (
    RECORD_OVERHEAD,
    QuarantinedRecord,
    Record,
    SpoolBatch,
    SpoolCounters,
    SpoolDb,
    SpooledRecord,
)

__all__ = ["RECORD_OVERHEAD", "QuarantinedRecord", "Record", "Spool", "SpoolBatch",
           "SpoolCounters", "SpoolError", "SpooledRecord"]

_STOP = object()
# 10 ms: a pipelined MQTT source puts a small batch every few ms; paced, they share one
# fsync (~95 commits/s at 10,000 msg/s instead of ~500) and the engine never waits for it.
COMMIT_EVERY_S = 0.01


class SpoolError(Exception):
    """The spool could not store or read records (disk full, file damaged)."""


class Spool:
    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: SpoolDb | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._main, name="linemon-spool", daemon=True)
        self._thread.start()
        await self._call(lambda db: None)  # raises SpoolError if the file cannot be opened

    async def close(self) -> None:
        if self._thread is None:
            return
        self._q.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # --- API: everything runs on the spool thread -----------------------------------

    async def put(self, records: Sequence[Record]) -> list[int]:
        """Store records durably; returns their ids once the commit holding them is on disk."""
        if not records:
            return []
        return await self._submit("put", list(records))

    async def peek(
        self, limit: int, *, kind: str | None = None, min_id: int = 0, max_id: int | None = None
    ) -> list[SpooledRecord]:
        """The oldest `limit` records (by id) in [min_id, max_id], optionally of one kind."""
        return await self._call(SpoolDb.peek, limit, kind, min_id, max_id)

    async def peek_batch(
        self, limit: int, *, kind: str | None = None, min_id: int = 0, max_id: int | None = None
    ) -> SpoolBatch:
        """What `peek` returns, as one text and arrays: what the forwarder writes."""
        return await self._call(SpoolDb.peek_batch, limit, kind, min_id, max_id)

    async def ack(self, ids: Sequence[int]) -> int:
        """Remove records the store acknowledged; returns how many were still there."""
        return await self._call(SpoolDb.ack, list(ids)) if ids else 0

    async def ack_batch(self, batch: SpoolBatch) -> int:
        """`ack` of a batch's records, without a Python int per id (its ids ascend)."""
        return await self._call(SpoolDb.ack, batch.ids, True) if len(batch) else 0

    async def quarantine(self, items: Sequence[tuple[int, str]]) -> int:
        """Move (id, error) records the store rejected into the quarantine table."""
        return await self._call(SpoolDb.quarantine, list(items)) if items else 0

    async def list_quarantine(self, limit: int = 100) -> list[QuarantinedRecord]:
        return await self._call(SpoolDb.list_quarantine, limit)

    async def retry_quarantine(self, ids: Sequence[int] | None = None) -> list[int]:
        """Put quarantined records back in the spool (all, or the given ids); new ids."""
        return await self._call(SpoolDb.retry_quarantine, None if ids is None else list(ids))

    async def max_id(self) -> int:
        return await self._call(lambda db: db.next_id - 1)

    async def remaining(self, *, ids: Sequence[int] | None = None, max_id: int = 0) -> int:
        """How many of `ids` (or of the records with id <= max_id) are still spooled."""
        return await self._call(SpoolDb.remaining, None if ids is None else list(ids), max_id)

    async def any_left(self, *, ids: Sequence[int] | None = None, max_id: int = 0) -> bool:
        """Whether any of `ids` (or any record with id <= max_id) is still spooled."""
        return await self._call(SpoolDb.any_left, None if ids is None else list(ids), max_id)

    async def oldest_ts(self, kind: str) -> int | None:
        return await self._call(SpoolDb.oldest_ts, kind)

    async def get_meta(self, key: str) -> str | None:
        return await self._call(SpoolDb.get_meta, key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._call(SpoolDb.set_meta, key, value)

    def counters(self) -> SpoolCounters:
        return self._db.counters() if self._db is not None else SpoolCounters()

    # --- plumbing -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._submit("call", (fn, args))

    def _submit(self, op: str, payload: Any) -> asyncio.Future[Any]:
        if self._thread is None:
            raise SpoolError("spool is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._q.put((op, payload, fut, loop))
        return fut

    @staticmethod
    def _resolve(item: tuple[Any, ...], result: Any = None,
                 error: BaseException | None = None) -> None:
        _, _, fut, loop = item

        def done() -> None:
            if fut.done():
                return  # the caller was cancelled; the work is done anyway
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(done)

    def _main(self) -> None:
        open_error: BaseException | None = None
        try:
            self._db = SpoolDb(self.path, self.max_bytes)
        except sqlite3.Error as err:
            open_error = SpoolError(f"cannot open spool {self.path}: {err}")
        last_commit = 0.0
        while True:
            items = [self._q.get()]
            if items[0] is not _STOP and items[0][0] == "put":
                # Group commit paced: at most one fsync per COMMIT_EVERY_S, so a stream of
                # small batches shares commits instead of queueing one each.
                wait = last_commit + COMMIT_EVERY_S - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last_commit = time.monotonic()
            while True:  # group commit: take everything that queued up meanwhile
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = any(it is _STOP for it in items)
            items = [it for it in items if it is not _STOP]
            if open_error is not None or self._db is None:
                for it in items:
                    self._resolve(it, error=open_error)
            else:
                self._run(self._db, items)
            if stop:
                if self._db is not None:
                    self._db.close()
                return

    def _run(self, db: SpoolDb, items: list[tuple[Any, ...]]) -> None:
        for it in items:
            if it[0] != "call":
                continue
            fn, args = it[1]
            try:
                self._resolve(it, fn(db, *args))
            except Exception as err:
                db.rollback()
                if isinstance(err, sqlite3.Error):
                    err = SpoolError(f"spool {self.path}: {err}")
                self._resolve(it, error=err)
        puts = [it for it in items if it[0] == "put"]
        if not puts:
            return
        try:
            results = db.insert([it[1] for it in puts])
        except Exception as err:  # sqlite3.Error, or a str sqlite cannot encode
            error = SpoolError(f"spool {self.path}: cannot store records: {err}")
            for it in puts:
                self._resolve(it, error=error)
            return
        for it, ids in zip(puts, results, strict=True):
            self._resolve(it, ids)
