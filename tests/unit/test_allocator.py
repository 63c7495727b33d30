"""linemon/allocator.py: once a large block was freed, the next large one still gets a
mapping of its own (and goes back to the system when freed) instead of heap pages.

Each case runs in a fresh interpreter: the setting is process-wide, and this suite's own
process has had it since the first Linemon started."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from linemon import allocator

REPO = Path(__file__).resolve().parents[2]

MAPPED_AFTER_A_BIGGER_BLOCK = """
import ctypes, sys
from linemon.allocator import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed" and not fix_mmap_threshold():
    sys.exit("mallopt refused the threshold")
bigger = bytearray(8 << 20)  # mapped; freeing it moves glibc's threshold up to 8 MiB
del bigger
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""

LIBC, LIBC_VERSION = platform.libc_ver()
glibc_only = pytest.mark.skipif(
    LIBC != "glibc" or tuple(map(int, LIBC_VERSION.split("."))) < (2, 33),
    reason="glibc's settings (elsewhere linemon leaves the allocator alone); mallinfo2 is 2.33")


def run_fresh(script: str, mode: str, **env: str) -> str:
    """`script` in a new interpreter, with glibc's allocator settings only from `env`."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", script, mode], cwd=REPO,
                         env=clean | env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def mapped_for_a_1_mib_block(mode: str) -> int:
    return int(run_fresh(MAPPED_AFTER_A_BIGGER_BLOCK, mode))


@glibc_only
def test_with_the_fixed_threshold_a_block_gets_its_own_mapping_after_a_bigger_one() -> None:
    assert mapped_for_a_1_mib_block("fixed") >= 1 << 20


@glibc_only
def test_glibc_left_alone_serves_it_from_the_heap() -> None:
    """What the setting is for: without it the same block takes heap pages."""
    assert mapped_for_a_1_mib_block("default") == 0


HOLES_GIVEN_BACK = """
import sys
from linemon.allocator import fix_mmap_threshold, return_free_memory

def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

fix_mmap_threshold()
blocks = [bytearray(4096) for _ in range(20_000)]  # ~80 MiB of heap, below the threshold
del blocks[:-1]  # the last one keeps the heap's top: nothing is given back on free
before = rss_kib()
if sys.argv[1] == "trim" and not return_free_memory():
    sys.exit("malloc_trim gave nothing back")
print(before - rss_kib())
"""


def given_back_kib(mode: str) -> int:
    return int(run_fresh(HOLES_GIVEN_BACK, mode))


@glibc_only
def test_free_pages_between_blocks_in_use_go_back_to_the_system() -> None:
    assert given_back_kib("trim") > 60 * 1024


@glibc_only
def test_without_it_the_process_keeps_them() -> None:
    assert given_back_kib("keep") < 4 * 1024


@glibc_only
@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_an_operators_own_threshold_is_kept(env: dict[str, str]) -> None:
    script = "from linemon.allocator import fix_mmap_threshold; print(fix_mmap_threshold())"
    assert run_fresh(script, "", **env) == "False"
    assert run_fresh(script, "") == "True"


@glibc_only
async def test_the_periodic_return_goes_on_after_a_failed_turn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, third_turn, turns = asyncio.get_running_loop(), asyncio.Event(), 0

    def fails_once() -> bool:  # runs in a worker thread
        nonlocal turns
        turns += 1
        if turns == 1:
            raise OSError("the first turn fails")
        if turns == 3:
            loop.call_soon_threadsafe(third_turn.set)
        return True

    monkeypatch.setattr(allocator, "return_free_memory", fails_once)
    task = asyncio.create_task(allocator.return_free_memory_every(0.01))
    try:
        async with asyncio.timeout(5):
            await third_turn.wait()
        assert not task.done()
    finally:
        task.cancel()
