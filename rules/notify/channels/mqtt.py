"""MQTT publish (paho-mqtt 2.x) for stack lights, andon boards and other machines.

One JSON payload per alert state change on a topic built from the alert's labels
(default `linemon/alerts/{line}/{machine}`, retained: a light that reconnects shows the
last state). The idempotency key travels in the payload and, on MQTT 5, as a user
property. A message counts as delivered when the broker has acknowledged it (QoS 1/2).

paho runs its own network thread and reconnects by itself; a send while disconnected
fails at once (and is retried from the outbox) rather than sitting in paho's queue,
where it would be sent a second time after the outbox's retry.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from linemon.config import resolve_secret
from rules.notify.channels.base import DeliveryError, register
from rules.notify.config import MqttChannelConfig
from rules.notify.message import Message


@register("mqtt")
class MqttChannel:
    kind = "mqtt"

    def __init__(self, config: MqttChannelConfig) -> None:
        self.config = config
        self.name = config.name
        at = f"notifications.channels[{self.name}]"
        self._username = resolve_secret(config.username_env, f"{at}.username_env")
        self._password = resolve_secret(config.password_env, f"{at}.password_env")
        self._v5 = config.protocol == "5"
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    async def send(self, message: Message, address: str) -> str:
        client = await self._connect()
        topic = topic_for(self.config.topic, message)
        payload = json.dumps(payload_of(message)).encode()
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("idempotency-key", message.key)]
        info = client.publish(topic, payload, qos=self.config.qos, retain=self.config.retain,
                              properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            why = mqtt.error_string(info.rc)
            raise DeliveryError(f"{self.config.host}: publish refused: {why}")
        try:
            await asyncio.to_thread(info.wait_for_publish, self.config.timeout_s)
        except (RuntimeError, ValueError) as err:
            raise DeliveryError(f"{self.config.host}: publish failed: {err}") from err
        if not info.is_published():
            raise DeliveryError(f"{self.config.host}: no PUBACK within {self.config.timeout_s} s")
        return f"{topic} mid={info.mid}"

    async def _connect(self) -> mqtt.Client:
        if self._client is None:
            self._client = self._new_client()
            try:
                self._client.connect_async(self.config.host, self.config.port, keepalive=30)
            except (OSError, ValueError) as err:
                raise DeliveryError(f"{self.config.host}: cannot connect: {err}") from err
            self._client.loop_start()
        if not self._connected.is_set() and not await asyncio.to_thread(
                self._connected.wait, self.config.timeout_s):
            raise DeliveryError(f"{self.config.host}:{self.config.port}: not connected")
        return self._client

    def _new_client(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=c.client_id or "",
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if c.tls:
            client.tls_set(ca_certs=str(c.ca_file) if c.ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any = None) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)


def topic_for(template: str, m: Message) -> str:
    values = {"line": m.line or "_plant", "machine": m.machine or "_line", "rule": m.rule,
              "severity": m.severity,
              "fingerprint": m.alerts[0].fingerprint if m.alerts else "_"}
    try:
        return template.format_map(values)
    except (KeyError, ValueError):
        return template


def payload_of(m: Message) -> dict[str, Any]:
    return {
        "key": m.key, "state": m.transition, "severity": m.severity, "line": m.line,
        "machine": m.machine, "rule": m.rule, "title": m.title, "message": m.body,
        "level": m.level, "acknowledged_by": m.acknowledged_by, "at": m.created_at,
        "fingerprints": [a.fingerprint for a in m.alerts],
    }
