"""Generic webhook: linemon's own JSON, or a Slack- or Teams-shaped body.

- `json`: the whole message (title, body, severity, labels, alerts, ack and board links)
  with `"version": 1`, for integrations that parse it.
- `slack`: an incoming-webhook body (`text` plus Block Kit sections and a button row).
- `teams`: a Workflows ("When a Teams webhook request is received") body: one Adaptive
  Card in `attachments`.

Every request carries `Idempotency-Key`; with `secret_env`, also
`X-Linemon-Signature: sha256=<hex HMAC of the body>` so the receiver can trust it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from linemon.config import resolve_secret
from rules.notify.channels.base import IDEMPOTENCY_HEADER, http_client, post_json, register
from rules.notify.config import WebhookChannelConfig
from rules.notify.message import Message

SIGNATURE_HEADER = "X-Linemon-Signature"


@register("webhook")
class WebhookChannel:
    kind = "webhook"

    def __init__(self, config: WebhookChannelConfig) -> None:
        self.config = config
        self.name = config.name
        at = f"notifications.channels[{self.name}]"
        url = config.url or resolve_secret(config.url_env, f"{at}.url_env")
        assert url is not None  # one of url/url_env is required by the config model
        self.url = url
        self._secret = resolve_secret(config.secret_env, f"{at}.secret_env")
        self._client = http_client(config.timeout_s)

    async def send(self, message: Message, address: str) -> str:
        body = json.dumps(render(message, self.config.format)).encode()
        headers = {**self.config.headers, IDEMPOTENCY_HEADER: message.key}
        if self._secret:
            digest = hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        response = await post_json(self._client, self.url, body, headers)
        return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()


def render(message: Message, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return _slack(message)
    if fmt == "teams":
        return _teams(message)
    return {"version": 1, **message.to_json()}


def _slack(m: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": m.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": m.body[:3000]}},
    ]
    buttons = []
    if m.click_url:
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Open board"},
                        "url": m.click_url})
    if m.ack_url:  # a browser opens it: the GET page asks for one more tap, then POSTs
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"},
                        "url": m.ack_url, "style": "primary"})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": f"{m.title}\n{m.body}", "blocks": blocks}


def _teams(m: Message) -> dict[str, Any]:
    actions = []
    if m.click_url:
        actions.append({"type": "Action.OpenUrl", "title": "Open board", "url": m.click_url})
    if m.ack_url:
        actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": m.ack_url})
    color = {"critical": "Attention", "warning": "Warning"}.get(m.severity, "Default")
    if m.transition != "firing":
        color = "Good"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": m.title, "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": True},
            {"type": "TextBlock", "text": m.body, "wrap": True},
        ],
        "actions": actions,
    }
    return {"type": "message", "summary": m.title, "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
