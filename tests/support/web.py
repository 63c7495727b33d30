"""A real uvicorn in the test's event loop: on a free or given port, stoppable and restartable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.support.plants import eventually
from tests.support.services import free_port


class Uvicorn:
    """One uvicorn serving `app` on a fixed port; stop() and start() again keep the port."""

    def __init__(self, app: Any, port: int | None = None, lifespan: str = "on") -> None:
        self.app = app
        self.port = port if port is not None else free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.lifespan = lifespan
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, lifespan=self.lifespan,
            log_level="warning", timeout_graceful_shutdown=2))
        self._task = asyncio.create_task(self.server.serve())
        server, task = self.server, self._task
        await eventually(lambda: server.started or task.done(), 10, "uvicorn to start")
        assert server.started, f"uvicorn did not start on {self.host}"

    async def stop(self) -> None:
        if self.server is None or self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)
        self.server = self._task = None


@contextlib.asynccontextmanager
async def serving(app: Any, port: int | None = None, lifespan: str = "on"
                  ) -> AsyncIterator[Uvicorn]:
    web = Uvicorn(app, port, lifespan)
    await web.start()
    try:
        yield web
    finally:
        await web.stop()
