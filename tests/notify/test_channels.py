"""Each channel against a real receiver: HTTP (ntfy publish API, webhooks), SMTP, mosquitto."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rules.notify.channels import DeliveryError, build_channel
from rules.notify.channels.email import EmailChannel
from rules.notify.config import (
    EmailChannelConfig,
    MqttChannelConfig,
    NtfyChannelConfig,
    WebhookChannelConfig,
)
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER
from tests.notify.helpers import message
from tests.notify.receivers import HttpReceiver, SmtpReceiver
from tests.notify.tls import server_context
from tests.support.plants import eventually
from tests.support.services import Mosquitto


async def test_ntfy_publishes_json_with_an_acknowledge_button(receiver: HttpReceiver) -> None:
    channel = build_channel(NtfyChannelConfig(kind="ntfy", name="phones", server=receiver.url))
    receipt = await channel.send(message(), "alice-phone")
    await channel.close()
    [got] = receiver.ntfy("alice-phone")
    assert receipt == "m000001"  # ntfy's message id, kept in the delivery log
    assert got.key == "r/abc@1/firing/0/ch/alice"
    body = got.body
    assert (body["title"], body["priority"], body["click"]) == (
        "CRITICAL: line-1 / press-1: stopped", 5, "http://linemon.test/phone")
    assert body["tags"] == ["rotating_light", "line-1", "press-1"]
    assert body["actions"] == [{"action": "http", "label": "Acknowledge", "method": "POST",
                                "url": "http://linemon.test/api/v1/alerts/ack-link/x.y",
                                "clear": True}]


async def test_ntfy_resolved_has_no_button_and_lower_priority(receiver: HttpReceiver) -> None:
    channel = build_channel(NtfyChannelConfig(kind="ntfy", name="phones", server=receiver.url))
    await channel.send(message("k/resolved", transition="resolved", ack_url=None), "alice-phone")
    await channel.close()
    [got] = receiver.ntfy()
    assert "actions" not in got.body
    assert (got.body["priority"], got.body["tags"][0]) == (3, "white_check_mark")


@pytest.mark.parametrize("fmt", ["json", "slack", "teams"])
async def test_webhook_bodies(receiver: HttpReceiver, fmt: str, monkeypatch) -> None:
    monkeypatch.setenv("LINEMON_TEST_HOOK_SECRET", "hook-secret")
    channel = build_channel(WebhookChannelConfig(
        kind="webhook", name="hook", url=f"{receiver.url}/hook/{fmt}", format=fmt,
        secret_env="LINEMON_TEST_HOOK_SECRET", headers={"X-Plant": "demo"}))
    await channel.send(message(f"key-{fmt}"), "")
    await channel.close()
    [got] = receiver.hooks(fmt)
    assert got.key == f"key-{fmt}" and got.headers["x-plant"] == "demo"
    assert got.headers["x-linemon-signature"].startswith("sha256=")
    if fmt == "json":
        assert got.body["version"] == 1 and got.body["transition"] == "firing"
        assert got.body["alerts"][0]["machine"] == "press-1"
    elif fmt == "slack":
        assert got.body["text"].startswith("CRITICAL: line-1 / press-1: stopped")
        buttons = got.body["blocks"][-1]["elements"]
        assert [b["text"]["text"] for b in buttons] == ["Open board", "Acknowledge"]
    else:
        card = got.body["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["body"][0]["text"] == "CRITICAL: line-1 / press-1: stopped"


async def test_http_answers_decide_retry_or_give_up(receiver: HttpReceiver) -> None:
    channel = build_channel(WebhookChannelConfig(kind="webhook", name="hook",
                                                 url=f"{receiver.url}/hook/x"))
    receiver.fail_with = [503, 429, 400]
    for permanent in (False, False, True):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(message(), "")
        assert caught.value.permanent is permanent
    await receiver.stop()  # nobody listening: a connection error, retried later
    with pytest.raises(DeliveryError) as caught:
        await channel.send(message(), "")
    assert not caught.value.permanent and "127.0.0.1" in str(caught.value)
    await channel.close()


async def test_email_over_starttls_with_auth(smtp: SmtpReceiver, certs, monkeypatch) -> None:
    monkeypatch.setenv("LINEMON_TEST_SMTP_USER", SMTP_USER)
    monkeypatch.setenv("LINEMON_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    channel = EmailChannel(EmailChannelConfig(
        kind="email", name="mail", host="127.0.0.1", port=smtp.port, security="starttls",
        username_env="LINEMON_TEST_SMTP_USER", password_env="LINEMON_TEST_SMTP_PASSWORD",
        sender="linemon@plant.test", ca_file=certs[0]))
    first = message("k/firing")
    await channel.send(first, "alice@plant.test")
    await channel.send(message("k/resolved", transition="resolved", ack_url=None,
                               thread_key="k/firing"), "alice@plant.test")
    await channel.send(first, "alice@plant.test")  # a retry after a crash: same Message-ID
    fired, resolved = smtp.received
    assert smtp.seen[fired["Message-ID"]] == 2 and len(smtp.received) == 2
    assert fired["Message-ID"] == channel.message_id("k/firing")
    assert resolved["In-Reply-To"] == fired["Message-ID"]
    assert fired["Subject"] == "CRITICAL: line-1 / press-1: stopped"
    assert "Acknowledge: http://linemon.test/api/v1/alerts/ack-link/x.y" in fired.get_content()
    assert smtp.auth_users == [SMTP_USER] * 3


async def test_email_over_implicit_tls_and_refusals(certs, tmp_path: Path) -> None:
    box = SmtpReceiver("tls", server_context(*certs))
    box.start()
    try:
        good = EmailChannel(EmailChannelConfig(
            kind="email", name="mail", host="127.0.0.1", port=box.port, security="tls",
            sender="linemon@plant.test", ca_file=certs[0]))
        await good.send(message(), "bob@plant.test")
        assert [m["To"] for m in box.received] == ["bob@plant.test"]
        untrusted = EmailChannel(EmailChannelConfig(
            kind="email", name="mail", host="127.0.0.1", port=box.port, security="tls",
            sender="linemon@plant.test"))  # the system CAs do not know this server
        with pytest.raises(DeliveryError) as caught:
            await untrusted.send(message(), "bob@plant.test")
        assert not caught.value.permanent
    finally:
        box.stop()


async def test_mqtt_publishes_retained_state_for_the_andon(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    channel = build_channel(MqttChannelConfig(kind="mqtt", name="andon", port=broker.port,
                                              topic="andon/{line}/{machine}"))
    got: list[mqtt.MQTTMessage] = []
    try:
        await channel.send(message("k/1"), "")
        await channel.send(message("k/2", transition="resolved", ack_url=None), "")
        # A light that connects afterwards still sees the last state: it is retained.
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        sub.on_message = lambda _c, _u, msg: got.append(msg)
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("andon/#", qos=1)
        sub.loop_start()
        await eventually(lambda: got, 10, "the retained andon state")
        sub.loop_stop()
        sub.disconnect()
    finally:
        await channel.close()
        broker.stop()
    [last] = got
    payload = json.loads(last.payload)
    assert last.topic == "andon/line-1/press-1" and last.retain
    assert (payload["state"], payload["key"]) == ("resolved", "k/2")


async def test_mqtt_without_a_broker_fails_for_a_retry() -> None:
    channel = build_channel(MqttChannelConfig(kind="mqtt", name="andon", port=1, timeout_s=0.5))
    with pytest.raises(DeliveryError) as caught:
        await asyncio.wait_for(channel.send(message(), ""), 5)
    assert not caught.value.permanent
    await channel.close()
