"""Real receivers on free ports: an HTTP server (ntfy publish API + webhooks) and SMTP.

The HTTP receiver is a small FastAPI app on a real uvicorn. `POST /` emulates ntfy's
JSON publish API (https://docs.ntfy.sh/publish/#publish-as-json): it checks the fields
and answers with a message envelope like ntfy's. A real ntfy server could not be had
here (not in the apt sources; the Go module proxy refuses heckel.io/ntfy/v2 with 403).
`POST /hook/{name}` takes webhooks. Both dedupe on `Idempotency-Key`, as a receiver
that wants exactly-once must: a repeat is answered like the first and counted.

The SMTP receiver is aiosmtpd (its own thread), with STARTTLS or implicit TLS and AUTH,
deduping on Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.plants import eventually
from tests.support.services import free_port
from tests.support.web import serving as serve_app

NTFY_FIELDS = {"topic", "message", "title", "tags", "priority", "actions", "click", "attach",
               "markdown", "icon", "filename", "delay", "email", "call"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # wall clock (time.time) when it arrived

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


@dataclass
class HttpReceiver:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)  # first arrival of each key
    seen: Counter[str] = field(default_factory=Counter)  # every accepted arrival, by key
    attempts: int = 0  # every request, refused ones too
    fail_with: list[int] = field(default_factory=list)  # statuses for the next requests
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ntfy(self, topic: str | None = None) -> list[Received]:
        return [r for r in self.received if r.path == "/" and topic in (None, r.body["topic"])]

    def hooks(self, name: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/hook/{name}"]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values())

    def app(self) -> FastAPI:
        app = FastAPI()

        async def record(request: Request, reply: dict[str, Any]) -> JSONResponse:
            body = await request.json()
            key = request.headers.get("idempotency-key", "")
            self.attempts += 1
            if self.fail_with:  # refused: not received, so not a duplicate when it comes again
                return JSONResponse({"error": "test failure"}, status_code=self.fail_with.pop(0))
            self.seen[key] += 1
            if self.seen[key] == 1:
                self.received.append(Received(request.url.path, dict(request.headers), body,
                                              time.time()))
            return JSONResponse(reply)

        @app.post("/")
        async def ntfy_publish(request: Request) -> JSONResponse:
            body = await request.json()
            unknown = set(body) - NTFY_FIELDS
            if unknown or not isinstance(body.get("topic"), str):
                return JSONResponse({"code": 40001, "error": f"bad fields {unknown}"}, 400)
            envelope = {"id": f"m{len(self.received) + 1:06d}", "time": int(time.time()),
                        "event": "message", **body}
            return await record(request, envelope)

        @app.post("/hook/{name}")
        async def hook(name: str, request: Request) -> JSONResponse:
            return await record(request, {"ok": True})

        return app

    async def start(self) -> None:
        self._server = uvicorn.Server(uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        server = self._server
        self._task = asyncio.create_task(server.serve())
        await eventually(lambda: server.started or self._task.done(), 10, "receiver to start")
        assert server.started, "the HTTP receiver did not start"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        self._server = self._task = None


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[uvicorn.Server]:
    """linemon's app on a real uvicorn at a port chosen beforehand (its public URL)."""
    async with serve_app(app, port) as web:
        assert web.server is not None
        yield web.server


class _MailHandler:
    def __init__(self, box: SmtpReceiver) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        mid = str(mail["Message-ID"])
        self.box.seen[mid] += 1
        if self.box.seen[mid] == 1:
            self.box.received.append(mail)
        self.box.auth_users.append(getattr(session, "auth_data", None))
        return "250 OK queued"


@dataclass
class SmtpReceiver:
    """aiosmtpd; `tls`: "starttls" (required, with AUTH) or "tls" (implicit) or "none"."""

    tls: str = "starttls"
    context: ssl.SSLContext | None = None
    users: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    auth_users: list[Any] = field(default_factory=list)
    _controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.users.get(
            data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, auth_data=data.login.decode() if ok else None)

    def start(self) -> None:
        kw: dict[str, Any] = {}
        if self.users:
            kw.update(authenticator=self._authenticate, auth_required=True)
        if self.tls == "starttls":
            kw.update(tls_context=self.context, require_starttls=True)
        elif self.tls == "tls":
            kw.update(ssl_context=self.context, auth_require_tls=False)
        else:
            kw.update(auth_require_tls=False)
        self._controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port,
                                      **kw)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
