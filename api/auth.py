"""API keys, roles, line scope, kiosk keys, and the throttle on failed keys.

Keys come from the environment and are kept only as SHA-256 digests. Every route says
what it needs with `require(...)`; the same rule is published in the OpenAPI document
(`x-linemon-access`), so integrators can read it and the role-matrix test can check it.

Order of the checks, and why: a client that guessed too many keys gets 429 before its
key is even looked at (otherwise a 200 among the 429s would confirm a guess); then no
key or an unknown key is 401; a known key with too small a role, a kiosk key off its
board, or a key scoped to other lines is 403.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection

from linemon.config import ApiConfig, ConfigError, ConfigIssue, resolve_secret

ROLES = ("viewer", "operator", "maintenance", "supervisor", "admin")
PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "admin", "apikey", "test", "demo"}
MIN_KEY_LENGTH = 16

# Declared for the OpenAPI document only; `presented_key` reads the headers itself so the
# WebSocket (which cannot use these) and REST share one parser.
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
BearerDoc = Annotated[Any, Security(BEARER)]
ApiKeyDoc = Annotated[Any, Security(API_KEY)]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    lines: frozenset[str] | None  # None: every line
    kiosk: bool = False

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def may_see(self, line: str) -> bool:
        return self.lines is None or line in self.lines


ANONYMOUS = Principal("anonymous", "viewer", None)


@dataclass(frozen=True, slots=True)
class Access:
    """What a route needs."""

    role: str
    kiosk: bool = False  # a kiosk key may use it (its line's live board)
    all_lines: bool = False  # it shows every line at once: line-scoped keys may not use it

    def openapi(self) -> dict[str, Any]:
        return {"role": self.role, "kiosk": self.kiosk, "all_lines": self.all_lines}

    def describe(self) -> str:
        text = f"Needs the **{self.role}** role or above"
        if self.all_lines:
            text += " with a key that is not limited to some lines"
        if self.kiosk:
            text += "; kiosk keys may use it for their line"
        return text + "."


class KeyRing:
    def __init__(self, config: ApiConfig) -> None:
        self._by_hash: dict[bytes, Principal] = {}
        self.anonymous = ANONYMOUS if config.anonymous is not None else None
        for i, key_config in enumerate(config.keys):
            at = f"api.keys[{i}].key_env"
            key = resolve_secret(key_config.key_env, at)
            assert key is not None
            if key.lower() in PLACEHOLDERS or len(key) < MIN_KEY_LENGTH:
                raise ConfigError("environment", [ConfigIssue(
                    path=at,
                    message=f"{key_config.key_env} holds a placeholder or a key shorter than "
                    f"{MIN_KEY_LENGTH} characters; refusing to start",
                )])
            digest = _digest(key)
            if digest in self._by_hash:
                raise ConfigError("environment", [ConfigIssue(
                    path=at, message=f"{key_config.key_env} holds the same key as "
                    f"{self._by_hash[digest].name!r}; every key must be different")])
            lines = frozenset(key_config.lines) if key_config.lines is not None else None
            self._by_hash[digest] = Principal(
                key_config.name, key_config.role, lines, key_config.kiosk)

    def authenticate(self, key: str) -> Principal | None:
        digest = _digest(key)
        found = None
        for known, principal in self._by_hash.items():  # no early exit: same time for all
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class AuthThrottle:
    """Failed keys per client in a sliding minute; past the limit the client gets 429.

    Clients are told apart by address. Behind a reverse proxy, run uvicorn with
    --forwarded-allow-ips so the address is the real client's, not the proxy's.
    """

    def __init__(self, per_minute: int, *, window_s: float = 60.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.failed_total = 0
        self.refused_total = 0

    def retry_after(self, client: str) -> float | None:
        """Seconds until the client may try again, or None if it may try now."""
        seen = self._failures.get(client)
        if seen is None:
            return None
        self._expire(seen)
        if len(seen) < self.per_minute:
            return None
        self.refused_total += 1
        return max(1.0, seen[0] + self.window_s - self._clock())

    def failed(self, client: str) -> None:
        self.failed_total += 1
        seen = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        seen.append(self._clock())
        self._expire(seen)
        while len(self._failures) > self.max_clients:  # bounded memory under a spray of IPs
            self._failures.popitem(last=False)

    def _expire(self, seen: deque[float]) -> None:
        cutoff = self._clock() - self.window_s
        while seen and seen[0] <= cutoff:
            seen.popleft()


def presented_key(conn: HTTPConnection, *, allow_query: bool = False) -> str | None:
    """Authorization: Bearer, X-API-Key, or (WebSocket only, browsers cannot set headers) ?key=.

    REST never takes the key from the URL: URLs end up in proxy logs and browser history.
    """
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    key = conn.headers.get("x-api-key")
    if key:
        return key
    if allow_query:
        return conn.query_params.get("key") or None
    return None


def authorize(conn: HTTPConnection, access: Access, *, allow_query_key: bool = False
              ) -> Principal:
    """The principal behind the request, or an HTTPException (401, 403 or 429)."""
    ring: KeyRing = conn.app.state.keyring
    throttle: AuthThrottle = conn.app.state.auth_throttle
    client = conn.client.host if conn.client else "unknown"
    key = presented_key(conn, allow_query=allow_query_key)
    if key is None:
        if ring.anonymous is None or not ring.anonymous.at_least(access.role):
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        principal = ring.anonymous
    else:
        wait = throttle.retry_after(client)
        if wait is not None:
            raise HTTPException(429, f"too many unknown API keys from {client}; try again in "
                                f"{wait:.0f} s", headers={"Retry-After": str(int(wait + 0.999))})
        found = ring.authenticate(key)
        if found is None:
            throttle.failed(client)
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        principal = found
    _check_scope(conn, principal, access)
    return principal


def _check_scope(conn: HTTPConnection, who: Principal, access: Access) -> None:
    if not who.at_least(access.role):
        raise HTTPException(403, f"this needs the {access.role} role; key {who.name!r} has "
                            f"{who.role}")
    if who.kiosk and not access.kiosk:
        raise HTTPException(403, f"key {who.name!r} is a kiosk key: it opens its line's live "
                            "board and nothing else")
    if access.all_lines and who.lines is not None:
        raise HTTPException(403, f"this shows every line; key {who.name!r} is limited to "
                            f"{', '.join(sorted(who.lines))}")
    # A line named in the path or the query must be one the key may see.
    named = [conn.path_params.get("line"), *conn.query_params.getlist("line")]
    for line in named:
        if line is not None and not who.may_see(line):
            raise HTTPException(403, f"key {who.name!r} is not allowed on line {line!r}")


Check = Callable[..., Coroutine[Any, Any, Principal]]


def require(role: str, *, kiosk: bool = False, all_lines: bool = False) -> Check:
    """A dependency that admits principals meeting `Access(role, kiosk, all_lines)`."""
    access = Access(role, kiosk, all_lines)

    async def check(request: Request, _bearer: BearerDoc, _key: ApiKeyDoc) -> Principal:
        return authorize(request, access)

    check.access = access  # type: ignore[attr-defined]  # read by api.openapi
    return check


def access_of(call: object) -> Access | None:
    return getattr(call, "access", None)


# The dependencies routes use, by what they need.
Board = Depends(require("viewer", kiosk=True))  # a line's live view: kiosk keys too
Viewer = Depends(require("viewer"))
PlantViewer = Depends(require("viewer", all_lines=True))
Operator = Depends(require("operator"))
Supervisor = Depends(require("supervisor"))
