"""The shipped mosquitto ACL against the scale-out bus: what an API process may and may not do.

A denied publish is dropped silently by the broker, so each case publishes and then looks
for the message at a subscriber that is allowed to see it.
"""

from __future__ import annotations

import getpass
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.tools import DEPLOY
from tests.support.services import free_port, mosquitto_binary, wait_for_port

ROOT = "linemon/v1/site"
PASSWORDS = {"linemon": "engine-password-0123456789", "linemon-api": "api-password-0123456789"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}",
        f"acl_file {DEPLOY / 'mosquitto' / 'acl'}", f"user {getpass.getuser()}", ""]))
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=out, stderr=out)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class Client:
    def __init__(self, port: int, user: str, client_id: str, subscribe: list[str]) -> None:
        self.inbox: queue.Queue[str] = queue.Queue()
        self.subscribed = queue.Queue[bool]()
        c = self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv5)
        c.username_pw_set(user, PASSWORDS[user])
        c.on_message = lambda _c, _u, m: self.inbox.put(m.topic)
        c.on_subscribe = lambda *_a: self.subscribed.put(True)
        c.connect("127.0.0.1", port)
        c.loop_start()
        for topic in subscribe:
            c.subscribe(topic, qos=1)
            self.subscribed.get(timeout=5)

    def publish(self, topic: str) -> None:
        self.client.publish(topic, b"{}", qos=1).wait_for_publish(5)

    def got(self, topic: str, timeout: float = 1.0) -> bool:
        try:
            while True:
                if self.inbox.get(timeout=timeout) == topic:
                    return True
        except queue.Empty:
            return False

    def drain(self) -> None:
        while not self.inbox.empty():
            self.inbox.get_nowait()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_api_user_sends_commands_reads_views_and_cannot_forge_them(broker: int) -> None:
    engine = Client(broker, "linemon", "linemon-engine-e0",
                    [f"{ROOT}/lines/+/commands", f"{ROOT}/lines/+/view"])
    api = Client(broker, "linemon-api", "linemon-api-a1",
                 [f"{ROOT}/lines/+/view", f"{ROOT}/replies/linemon-api-a1"])
    other_api = Client(broker, "linemon-api", "linemon-api-b2", [f"{ROOT}/replies/#"])
    try:
        api.publish(f"{ROOT}/lines/line-1/commands")
        assert engine.got(f"{ROOT}/lines/line-1/commands")  # commands reach the engines

        engine.publish(f"{ROOT}/lines/line-1/view")
        assert api.got(f"{ROOT}/lines/line-1/view")  # views reach the API

        engine.drain()  # its own view came back to it too
        api.publish(f"{ROOT}/lines/line-1/view")  # a forged view: dropped by the broker
        assert not engine.got(f"{ROOT}/lines/line-1/view")

        engine.publish(f"{ROOT}/replies/linemon-api-a1")
        assert api.got(f"{ROOT}/replies/linemon-api-a1")
        assert not other_api.got(f"{ROOT}/replies/linemon-api-a1")  # not another's answers
    finally:
        for client in (engine, api, other_api):
            client.close()
