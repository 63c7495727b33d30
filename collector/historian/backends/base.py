"""What a store must do for the forwarder, and the errors it translates its failures into.

Each backend maps its own failures onto these four errors at its edge; the forwarder
decides from the error alone what to do with the batch.
"""

from __future__ import annotations

from typing import Protocol

from ..linebatch import LineBatch


class StoreError(Exception):
    """Base of the store errors the forwarder understands."""


class StoreUnavailable(StoreError):
    """Down, timing out, overloaded (5xx, 429): keep the batch and retry with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreRejected(StoreError):
    """The data itself is bad (400, 422): split the batch to find the bad point(s)."""


class StoreTooLarge(StoreError):
    """The batch is too large (413): split it; nothing is wrong with the points."""


class StoreAuthError(StoreError):
    """Wrong token, no permission or no such bucket/org (401, 403, 404): keep data, alarm."""


class Store(Protocol):
    """A history store as the forwarder sees it."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, kind: str, batch: LineBatch) -> None:
        """Write line-protocol points of one kind ("sample" or "event") or raise StoreError."""
        ...
