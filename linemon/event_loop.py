"""The event loop linemon runs on: uvloop where it is installed, asyncio's own elsewhere.

One loop carries the collectors, the engine, the history writer and the API, so its own
overhead (callbacks, socket readiness, timers) sits on every sample and every request;
uvloop's is lower. pyproject installs it everywhere but Windows, which uvloop does not
support. The test suite runs on the same loop (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's loop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on linemon's loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def name(loop: asyncio.AbstractEventLoop) -> str:
    """For the start-up line: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
