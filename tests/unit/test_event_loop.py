"""linemon runs on uvloop (linemon/event_loop.py), and so does this suite (tests/conftest.py)."""

from __future__ import annotations

import asyncio

from linemon import event_loop


async def test_the_suite_runs_on_the_loop_linemon_runs_on() -> None:
    assert event_loop.name(asyncio.get_running_loop()) == "uvloop"


def test_run_returns_what_the_coroutine_returns_on_uvloop() -> None:
    async def main() -> tuple[str, int]:
        await asyncio.sleep(0)
        return event_loop.name(asyncio.get_running_loop()), 42

    assert event_loop.run(main()) == ("uvloop", 42)
