"""The persisted outbox: deliveries survive restarts; each is queued once, by its key.

All SQLite work runs on one dedicated thread (a one-worker executor), so the event loop
never waits on a disk flush and the connection is only ever used from that thread.
Times come in as datetimes from the injected clock and are stored as unix seconds.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from rules.notify.dispatch import Delivery
from rules.notify.incidents import IncidentRecord
from rules.notify.outbox_db import OutboxDb, Row

__all__ = ["Outbox", "OutboxError", "Row"]
T = TypeVar("T")


class OutboxError(Exception):
    """The outbox file could not be opened, read or written."""


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pool: ThreadPoolExecutor | None = None
        self._db: OutboxDb | None = None

    async def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="linemon-outbox")
        self._db = await self._run(lambda: OutboxDb(self.path))

    async def close(self) -> None:
        if self._pool is None:
            return
        db, self._db = self._db, None
        if db is not None:
            await self._run(db.close)
        self._pool.shutdown(wait=True)
        self._pool = None

    # --- writes ---------------------------------------------------------------------------

    async def add(self, deliveries: Sequence[Delivery]) -> int:
        """Queue deliveries (on disk on return); returns how many were new."""
        if not deliveries:
            return 0
        rows = [(d.key, d.incident, d.transition, d.step, d.channel, d.recipient, d.address,
                 d.line, json.dumps(list(d.fingerprints)), json.dumps(d.message.to_json()),
                 d.token_nonce, "pending", d.created_at.timestamp(), d.created_at.timestamp())
                for d in deliveries]
        return await self._call(lambda db: db.insert(rows))

    async def delivered(self, rid: int, now: datetime, receipt: str) -> None:
        await self._call(lambda db: db.delivered(rid, now.timestamp(), receipt))

    async def retry(self, rid: int, at: datetime, error: str) -> None:
        await self._call(lambda db: db.retry(rid, at.timestamp(), error))

    async def failed(self, rid: int, error: str) -> None:
        await self._call(lambda db: db.failed(rid, error))

    async def cancel(self, incident: str, reason: str) -> int:
        return await self._call(lambda db: db.cancel(incident, reason))

    async def redeem(self, nonce: str, now: datetime, by: str) -> tuple[Row | None, bool]:
        return await self._call(lambda db: db.redeem(nonce, now.timestamp(), by))

    async def save_incidents(self, records: Sequence[IncidentRecord], now: datetime) -> None:
        rows = [(r.id, r.open, json.dumps(r.to_json())) for r in records]
        if rows:
            await self._call(lambda db: db.save_incidents(rows, now.timestamp()))

    async def open_incidents(self) -> list[IncidentRecord]:
        found = await self._call(lambda db: db.open_incidents())
        return [IncidentRecord.from_json(r) for r in found]

    async def prune(self, older_than: datetime) -> int:
        return await self._call(lambda db: db.prune(older_than.timestamp()))

    # --- reads ----------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int = 100, busy: Sequence[int] = ()) -> list[Row]:
        ids = list(busy)
        return await self._call(lambda db: db.due(now.timestamp(), limit, ids))

    async def next_at(self, busy: Sequence[int] = ()) -> float | None:
        """Unix time the next row may go (rows in `busy`, being sent, left out)."""
        ids = list(busy)
        return await self._call(lambda db: db.next_at(ids))

    async def deliveries(self, *, alert: str | None = None, status: str | None = None,
                         line: str | None = None, lines: list[str] | None = None,
                         channel: str | None = None, before: int | None = None,
                         limit: int = 100) -> list[Row]:
        """Newest first; `before` is an id cursor, `lines` limits to a key's lines."""
        return await self._call(lambda db: db.select(
            alert=alert, status=status, line=line, lines=lines, channel=channel,
            before=before, limit=limit))

    async def counts(self) -> dict[str, int]:
        return await self._call(lambda db: db.counts())

    # --- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[[OutboxDb], T]) -> T:
        db = self._db
        if db is None:
            raise OutboxError(f"outbox {self.path} is not open")
        return await self._run(lambda: fn(db))

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            raise OutboxError(f"outbox {self.path} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except Exception as err:
            if not isinstance(err, sqlite3.Error):
                raise
            raise OutboxError(f"outbox {self.path}: {err}") from err
