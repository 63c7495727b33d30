"""Ack-link tokens: a 16-byte nonce and an expiry, signed with HMAC-SHA256.

    token = b64url(nonce || expiry as uint32 unix seconds) "." b64url(mac[:16])

The nonce names one delivery in the outbox (so the token is short and says nothing by
itself); the outbox marks it used on the first redemption, which makes the link single-
use across restarts. The nonce comes from the delivery's idempotency key, so the one
message always carries the one token. Pure: the caller passes `now`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

MIN_SECRET_LENGTH = 32
_PAYLOAD = struct.Struct(">16sI")


class TokenError(Exception):
    """The link is not valid: `reason` is "invalid" (forged, damaged) or "expired"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AckToken:
    nonce: str  # hex
    expires: datetime


def nonce_for(key: str) -> str:
    return hashlib.sha256(b"ack-link\x00" + key.encode()).hexdigest()[:32]


class AckSigner:
    def __init__(self, secret: str, ttl_s: float) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the ack-link secret needs at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret.encode()
        self.ttl_s = ttl_s

    def sign(self, key: str, now: datetime) -> tuple[str, AckToken]:
        nonce = nonce_for(key)
        expires = int(now.timestamp() + self.ttl_s)
        payload = _PAYLOAD.pack(bytes.fromhex(nonce), expires)
        token = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        return token, AckToken(nonce, datetime.fromtimestamp(expires, UTC))

    def verify(self, token: str, now: datetime) -> AckToken:
        try:
            body, mac = token.split(".", 1)
            payload, given = _unb64(body), _unb64(mac)
            nonce, expires = _PAYLOAD.unpack(payload)
        except (ValueError, struct.error) as err:
            raise TokenError("invalid", "this is not an acknowledge link of this plant") from err
        if not hmac.compare_digest(given, self._mac(payload)):
            raise TokenError("invalid", "this is not an acknowledge link of this plant")
        at = datetime.fromtimestamp(expires, UTC)
        if now >= at:
            raise TokenError("expired", f"this acknowledge link expired at {at:%Y-%m-%d %H:%M} "
                             "UTC; acknowledge on the board or through the API")
        return AckToken(nonce.hex(), at)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 64:
        raise ValueError("bad length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
