"""The supervisor owns a source's connect/reconnect loop.

One task per source, so one source's trouble never stops another. During an
outage it tells the engine (machines go offline) and records the gap.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.sources.base import Emit, Source, SourceConfigError, SourceError

log = logging.getLogger("linemon.supervisor")

OnGap = Callable[[str, datetime, str], None]


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff over failed connects, each delay drawn from
    [ceiling/2, ceiling] so that sources losing one server do not all come back in lockstep."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.cap_s, self.initial_s * 2**self.attempt)
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


async def supervise(
    source: Source,
    emit: Emit,
    *,
    on_gap: OnGap,
    backoff: Backoff | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    backoff = backoff or Backoff()
    stats = source.stats
    while True:
        hopeless = False
        try:
            await source.run(emit)
            raise SourceError("source returned without raising")  # run() only ends by raising
        except asyncio.CancelledError:
            stats.connected = False
            raise
        except SourceError as err:
            reason = str(err) or type(err).__name__
            hopeless = isinstance(err, SourceConfigError)
        except Exception as err:  # a bug in a source must not kill the others
            log.exception("source %s crashed", source.name)
            reason = f"internal error: {err!r}"
        now = clock()
        was_connected = stats.connected
        stats.connected = False
        stats.last_error = reason
        if was_connected:
            await _record_gap(source, emit, on_gap, now, reason)
            # The backoff counts failed connects: after a connection that worked, a new
            # outage starts from the shortest delay (a server restart is back in seconds).
            backoff.reset()
        delay = backoff.cap_s if hopeless else backoff.next()
        stats.reconnects += 1
        if hopeless:
            log.error("source %s: %s (retrying in %.0fs)", source.name, reason, delay)
        else:
            log.info("source %s: reconnecting in %.1fs (%s)", source.name, delay, reason)
        await asyncio.sleep(delay)


async def _record_gap(source: Source, emit: Emit, on_gap: OnGap, at: datetime,
                      reason: str) -> None:
    """Machines offline in the engine, the gap in the stats, every tag bad in the history."""
    source.stats.gaps.append((at, None, reason))
    on_gap(source.name, at, reason)
    log.warning("source %s disconnected: %s", source.name, reason)
    try:
        await emit(source.outage(at))
    except Exception:  # the historian's trouble must not stop the reconnecting
        log.exception("source %s: could not record the outage", source.name)


def mark_connected(source: Source, at: datetime) -> None:
    """Called by a source once it is connected (again): closes the open gap, if any."""
    source.stats.connected = True
    source.stats.connected_since = at
    gaps = source.stats.gaps
    if gaps and gaps[-1][1] is None:
        gaps[-1] = (gaps[-1][0], at, gaps[-1][2])
