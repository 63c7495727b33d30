"""What every channel is, how channels are registered, and what they share (HTTP answers)."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from rules.notify.config import ChannelConfig
from rules.notify.message import Message

IDEMPOTENCY_HEADER = "Idempotency-Key"


class DeliveryError(Exception):
    """A message did not get through. `permanent`: retrying the same message cannot help."""

    def __init__(self, detail: str, *, permanent: bool = False,
                 retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    name: str
    kind: str

    async def send(self, message: Message, address: str) -> str:
        """Deliver; return a receipt for the log (the receiver's id or answer)."""
        ...

    async def close(self) -> None: ...


CHANNELS: dict[str, Callable[[Any], Channel]] = {}


def register(kind: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
        CHANNELS[kind] = cls
        return cls

    return add


def build_channel(config: ChannelConfig) -> Channel:
    return CHANNELS[config.kind](config)


def http_client(timeout_s: float) -> httpx.AsyncClient:
    # One pooled client per channel: a push is one request on a kept-alive connection.
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False)


async def post_json(client: httpx.AsyncClient, url: str, body: bytes,
                    headers: dict[str, str]) -> httpx.Response:
    """POST and translate transport errors and non-2xx answers into DeliveryError."""
    try:
        response = await client.post(url, content=body, headers={
            "Content-Type": "application/json", **headers})
    except httpx.TimeoutException as err:
        raise DeliveryError(f"{_host(url)}: timed out ({type(err).__name__})") from err
    except httpx.HTTPError as err:
        raise DeliveryError(f"{_host(url)}: {type(err).__name__}: {err}") from err
    if response.is_success:
        return response
    status = response.status_code
    # 408/425/429 and 5xx may pass; any other 4xx says this very request is wrong.
    permanent = 400 <= status < 500 and status not in (408, 425, 429)
    raise DeliveryError(f"{_host(url)}: HTTP {status}: {response.text[:200]}",
                        permanent=permanent, retry_after_s=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds, or an HTTP date taken relative to the receiver's own Date header (no clock
    is read here: the receiver's two timestamps give the wait)."""
    value = response.headers.get("retry-after", "")
    if value.isdigit():
        return float(value)
    try:
        at = email.utils.parsedate_to_datetime(value)
        ref = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
        return max(0.0, (at - ref).total_seconds())
    except (TypeError, ValueError, IndexError):  # not a date, or naive against aware
        return None


def _host(url: str) -> str:
    """Never log a whole webhook URL: Slack and Teams put the secret in the path."""
    try:
        return httpx.URL(url).host or "receiver"
    except httpx.InvalidURL:
        return "receiver"

