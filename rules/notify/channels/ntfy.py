"""ntfy: one JSON publish to the server's root URL, with an Acknowledge button.

    POST <server>/  {"topic", "title", "message", "priority", "tags", "click", "actions"}

The button is an ntfy `http` action: the phone itself POSTs to linemon's ack-link
endpoint with a signed, single-use token, and `clear: true` removes the notification.
ntfy keeps no idempotency keys; the header is sent anyway for proxies and test
receivers, and the outbox is what keeps a message from being queued twice.
"""

from __future__ import annotations

import json

from linemon.config import resolve_secret
from rules.notify.channels.base import IDEMPOTENCY_HEADER, http_client, post_json, register
from rules.notify.config import NtfyChannelConfig
from rules.notify.message import FIRING, RESOLVED, Message

PRIORITY = {"critical": 5, "warning": 4, "info": 3}
TAGS = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}


@register("ntfy")
class NtfyChannel:
    kind = "ntfy"

    def __init__(self, config: NtfyChannelConfig) -> None:
        self.config = config
        self.name = config.name
        self.url = config.server.rstrip("/") + "/"
        token = resolve_secret(config.token_env, f"notifications.channels[{self.name}].token_env")
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = http_client(config.timeout_s)

    async def send(self, message: Message, address: str) -> str:
        body = json.dumps(publish_body(message, address)).encode()
        response = await post_json(self._client, self.url, body,
                                   {IDEMPOTENCY_HEADER: message.key, **self._auth})
        try:
            return str(response.json().get("id", "")) or f"HTTP {response.status_code}"
        except ValueError:
            return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()


def publish_body(message: Message, topic: str) -> dict[str, object]:
    if message.transition == FIRING:
        priority, tags = PRIORITY.get(message.severity, 3), [TAGS.get(message.severity, "bell")]
    elif message.transition == RESOLVED:
        priority, tags = 3, ["white_check_mark"]
    else:
        priority, tags = 2, ["eyes"]
    body: dict[str, object] = {
        "topic": topic, "title": message.title, "message": message.body,
        "priority": priority, "tags": tags + [t for t in (message.line, message.machine) if t],
    }
    if message.click_url:
        body["click"] = message.click_url
    if message.ack_url:
        body["actions"] = [{"action": "http", "label": "Acknowledge", "url": message.ack_url,
                            "method": "POST", "clear": True}]
    return body
