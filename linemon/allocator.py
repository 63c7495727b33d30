"""The C allocator's settings for a long-running linemon process (glibc; elsewhere nothing).

glibc serves a request of at least its mmap threshold (128 KiB) with a mapping of its own,
unmapped when freed, unless a free hole in the heap can hold it. But each time such a
block is freed it raises the threshold to that block's size (up to 32 MiB): from then on
blocks that size come from the heap, whose pages stay with the process after they are
freed. linemon's large blocks are transient and recur all the time (the historian's
request bodies: about 0.75 MB of joined line protocol and as much again encoded, several
times a second at 10,000 samples/s), so with the moving threshold the heap held 4-5 MiB
more than it used within the first minutes of `bench.sustained`, and the amount crept up
with every larger peak after that. A fixed threshold keeps most of them out of the heap:
they go back to the system when freed. An operator who set the threshold
(`MALLOC_MMAP_THRESHOLD_`, `GLIBC_TUNABLES`) keeps theirs.

What the heap frees between blocks still in use stays with the process too (glibc gives
back only a free top of the heap, and only past 128 KiB), and the many small and middling
blocks of a 10,000 samples/s ingest leave such holes all the time: `return_free_memory`,
run once a minute, hands their whole pages back (malloc_trim).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value; setting it stops it moving
RETURN_EVERY_S = 60.0

log = logging.getLogger(__name__)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):  # musl
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve every block of `threshold` bytes or more with its own mapping, for good.
    Whether it took: False where the C library is not glibc, or the environment sets it."""
    if ("MALLOC_MMAP_THRESHOLD_" in os.environ
            or "malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    libc = _glibc()
    return libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1


def return_free_memory() -> bool:
    """Give the whole free pages of every heap back to the system; whether any were."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


async def return_free_memory_every(interval_s: float = RETURN_EVERY_S) -> None:
    """`return_free_memory` once per interval, in a worker thread: it walks every heap
    (0.2-4 ms measured under `bench.sustained`'s load) and the loop carries the ingest.
    The loop's own large allocations still wait while their heap is being walked."""
    if _glibc() is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(return_free_memory)
        except Exception:  # never fatal: memory is given back at the next turn, or not
            log.exception("returning free memory to the system failed")
