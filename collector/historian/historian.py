"""The historian facade the rest of linemon uses: write samples and events, query history.

    historian = Historian(config.historian, machine_lines={"press-1": "line-a"})
    await historian.start()
    await historian.write_samples(samples)   # durable (fsynced in the spool) on return
    page = await historian.query.downtime_events(start=..., end=..., machine="press-1")
    await historian.close()

Everything written goes through the durable spool and the forwarder to the configured
store (SQLite by default, InfluxDB when configured); queries go straight to the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from linemon.model import Sample

from .backends.sqlite import SqliteStore
from .config import HistorianConfig, InfluxBackendConfig
from .forwarder import Backoff, Forwarder
from .lineprotocol import LineProtocolError
from .query import HistoryQuery, HistoryUnavailable
from .schema import SampleEncoder, encode_event
from .spool import QuarantinedRecord, Record, Spool, SpoolError

log = logging.getLogger(__name__)

SQLITE_BATCH_SIZE = 5000
SQLITE_FLUSH_INTERVAL_S = 0.25  # a local file: keep history close to live
EDIT_TIMEOUT_S = 10.0
SPOOL_RETRY_BASE_S = 0.1  # a failed spool write is retried after 0.05-0.1 s, doubling
SPOOL_RETRY_CAP_S = 5.0


class HistorianConfigError(ValueError):
    """Something the config names is missing (e.g. the token's environment variable)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Historian:
    def __init__(
        self,
        config: HistorianConfig,
        *,
        machine_lines: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        env: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._env = os.environ if env is None else env
        self._encoder = SampleEncoder(machine_lines)
        self.spool = Spool(config.spool.path, max_bytes=config.spool.max_bytes)
        self._rejected: dict[str, int] = {}
        self._downsampler: Any = None
        self._closing = False
        self._spool_error: str | None = None  # while puts fail: the last failure
        self.spool_write_failures = 0
        backend = config.backend
        if isinstance(backend, InfluxBackendConfig):
            from .backends.downsample import Downsampler  # imported only when configured
            from .backends.influx import InfluxStore

            token = self._env.get(backend.token_env)
            if not token:
                raise HistorianConfigError(
                    f"historian.backend.token_env: environment variable {backend.token_env!r} "
                    "is not set (it must hold the InfluxDB token)")
            store: Any = InfluxStore(backend, token=token, clock=clock, edit_sink=self._edit)
            batch, interval = backend.batch_size, backend.flush_interval_s
        else:
            store = SqliteStore(backend, clock=clock, edit_sink=self._edit)
            batch, interval = SQLITE_BATCH_SIZE, SQLITE_FLUSH_INTERVAL_S
        self.store = store
        self.forwarder = Forwarder(
            self.spool, store, batch_size=batch, flush_interval_s=interval,
            replay_max_points_per_s=config.spool.replay_max_points_per_s, backoff=backoff)
        if isinstance(backend, InfluxBackendConfig):
            self._downsampler = Downsampler(store, self.spool, clock=clock,
                                            stored_since=self.forwarder.take_oldest_sample)

    @property
    def query(self) -> HistoryQuery:
        return self.store

    async def start(self) -> None:
        await self.spool.open()
        await self.store.open()
        await self.forwarder.start()
        if self._downsampler is not None:
            self._downsampler.start()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what can be written within the timeout; the rest waits in the spool."""
        self._closing = True
        if self._downsampler is not None:
            await self._downsampler.close()
        await self.forwarder.close(timeout_s)
        await self.store.close()
        await self.spool.close()

    async def write_samples(self, samples: Iterable[Sample]) -> int:
        """Spool samples; returns how many were stored (durably) once they are on disk."""
        return await self._put("sample", self._sample_records(samples))

    async def write_events(self, events: Iterable[object]) -> int:
        """Spool engine events, OeeSnapshots and Alerts (never dropped by the spool)."""
        return await self._put("event", self._event_records(events))

    async def write(self, samples: Iterable[Sample], events: Iterable[object]) -> None:
        """Spool a batch's samples and the events they caused in one commit: once this
        returns both are on disk, and a failed commit stores neither."""
        sample_records = self._sample_records(samples)
        event_records = self._event_records(events)
        if sample_records or event_records:
            await self._spool_put(sample_records + event_records)
        if sample_records:
            self.forwarder.notify("sample", len(sample_records))
        if event_records:
            self.forwarder.notify("event", len(event_records))

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything written so far is in the store; False on timeout."""
        return await self.forwarder.flush(timeout_s)

    async def list_quarantine(self, limit: int = 100) -> list[QuarantinedRecord]:
        return await self.spool.list_quarantine(limit)

    async def retry_quarantine(self, ids: Sequence[int] | None = None) -> int:
        new_ids = await self.spool.retry_quarantine(ids)
        self.forwarder.notify("event", len(new_ids))
        return len(new_ids)

    def health(self) -> dict[str, Any]:
        out = self.forwarder.health()
        out["backend"] = self.config.backend.kind
        out["spool_error"] = self._spool_error
        if self._spool_error is not None:
            out["ok"], out["alarm"] = False, "spool_write_failing"
        if self._downsampler is not None:
            out["downsampling"] = self._downsampler.health()
        return out

    def counters(self) -> dict[str, Any]:
        return {
            "spool": asdict(self.spool.counters()),
            "forwarder": self.forwarder.counter_dict(),
            "rejected": dict(self._rejected),
            "spool_write_failures": self.spool_write_failures,
        }

    # --- internals ------------------------------------------------------------------

    def _sample_records(self, samples: Iterable[Sample]) -> list[Record]:
        return self._records("sample", samples, self._encoder.encode)

    def _event_records(self, events: Iterable[object]) -> list[Record]:
        return self._records("event", events, encode_event)

    def _records(self, kind: str, items: Iterable[Any], encode: Callable[[Any], Record]
                 ) -> list[Record]:
        records = []
        for item in items:
            try:
                records.append(encode(item))
            except (LineProtocolError, TypeError, ValueError) as err:
                self._reject(kind, err, item)
        return records

    async def _put(self, kind: str, records: list[Record]) -> int:
        if records:
            await self._spool_put(records)
            self.forwarder.notify(kind, len(records))
        return len(records)

    async def _spool_put(self, records: list[Record]) -> None:
        """Put, retried until the records are on disk. Meanwhile the batch's messages stay
        unacknowledged and the sources wait (the broker and the PLCs hold the rest). Giving
        up would lose the batch: the engine has taken it, and the sources' duplicate
        screens would drop the redelivered copies as repeats."""
        backoff = Backoff(base_s=SPOOL_RETRY_BASE_S, cap_s=SPOOL_RETRY_CAP_S)
        while True:
            try:
                await self.spool.put(records)
            except SpoolError as err:
                if self._closing:
                    raise
                self.spool_write_failures += 1
                if self._spool_error is None:
                    log.error("spool write failed, retrying until it works (sources wait): %s",
                              err)
                self._spool_error = str(err)
                await asyncio.sleep(backoff.next())
                continue
            if self._spool_error is not None:
                log.warning("spool writes again (%d failed attempts in all)",
                            self.spool_write_failures)
                self._spool_error = None
            return

    async def _edit(self, records: list[Record]) -> None:
        ids = await self.spool.put(records)
        self.forwarder.notify("event", len(ids))
        if not await self.forwarder.flush(EDIT_TIMEOUT_S, ids=ids):
            raise HistoryUnavailable(
                "the change is saved and will appear once the history store is reachable")

    def _reject(self, kind: str, err: Exception, item: object) -> None:
        n = self._rejected.get(kind, 0) + 1
        self._rejected[kind] = n
        if n == 1 or n % 1000 == 0:  # rate-limited: a bad tag can flood
            log.warning("historian cannot store %s (%d so far): %s | %r", kind, n, err, item)


class HistoryReader:
    """Queries without writes: an API process of a scaled-out site (engines write)."""

    def __init__(self, config: HistorianConfig, *, clock: Callable[[], datetime] = _utc_now,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = config
        env = os.environ if env is None else env
        backend = config.backend
        if isinstance(backend, InfluxBackendConfig):
            from .backends.influx import InfluxStore

            token = env.get(backend.token_env)
            if not token:
                raise HistorianConfigError(
                    f"historian.backend.token_env: environment variable {backend.token_env!r} "
                    "is not set (it must hold the InfluxDB token)")
            self.store: Any = InfluxStore(backend, token=token, clock=clock, edit_sink=None)
        else:
            self.store = SqliteStore(backend, clock=clock, edit_sink=None)

    @property
    def query(self) -> HistoryQuery:
        return self.store

    async def start(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "backend": self.config.backend.kind, "read_only": True}

