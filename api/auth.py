"""API keys and roles: keys come from the environment and are kept only as hashes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from linemon.config import ApiConfig, ConfigError, ConfigIssue, resolve_secret

ROLES = ("viewer", "operator", "maintenance", "supervisor", "admin")
PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "admin", "apikey", "test", "demo"}
MIN_KEY_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    lines: frozenset[str] | None  # None: every line

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def may_see(self, line: str) -> bool:
        return self.lines is None or line in self.lines


ANONYMOUS = Principal("anonymous", "viewer", None)


class KeyRing:
    def __init__(self, config: ApiConfig) -> None:
        self._by_hash: dict[bytes, Principal] = {}
        self.anonymous = ANONYMOUS if config.anonymous is not None else None
        for i, key_config in enumerate(config.keys):
            key = resolve_secret(key_config.key_env, f"api.keys[{i}].key_env")
            assert key is not None
            if key.lower() in PLACEHOLDERS or len(key) < MIN_KEY_LENGTH:
                raise ConfigError("environment", [ConfigIssue(
                    path=f"api.keys[{i}].key_env",
                    message=f"{key_config.key_env} holds a placeholder or a key shorter than "
                    f"{MIN_KEY_LENGTH} characters; refusing to start",
                )])
            lines = frozenset(key_config.lines) if key_config.lines is not None else None
            self._by_hash[_digest(key)] = Principal(key_config.name, key_config.role, lines)

    def authenticate(self, key: str) -> Principal | None:
        digest = _digest(key)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or request.query_params.get("key")


def require(role: str) -> Callable[[Request], Principal]:
    def check(request: Request) -> Principal:
        ring: KeyRing = request.app.state.keyring
        key = _presented_key(request)
        if key is None:
            if ring.anonymous is not None and ring.anonymous.at_least(role):
                return ring.anonymous
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        principal = ring.authenticate(key)
        if principal is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if not principal.at_least(role):
            raise HTTPException(403, f"this needs the {role} role; key {principal.name!r} "
                                f"has {principal.role}")
        line = request.path_params.get("line")
        if line is not None and not principal.may_see(line):
            raise HTTPException(403, f"key {principal.name!r} is not allowed on line {line!r}")
        return principal

    return check


Viewer = Depends(require("viewer"))
