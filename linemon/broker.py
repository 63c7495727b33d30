"""An embedded MQTT broker (amqtt) so the demo needs nothing installed.

Production sites and the test suite use a real broker (mosquitto); this one only
speaks MQTT 3.1.1, which is why the demo config sets `protocol: "3.1.1"`.
"""

from __future__ import annotations

import logging

from amqtt.broker import Broker


class EmbeddedBroker:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        })
        # amqtt logs every client connect at INFO; keep the demo's console readable.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)

    async def start(self) -> None:
        await self._broker.start()

    async def stop(self) -> None:
        await self._broker.shutdown()
