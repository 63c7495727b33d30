"""The whole path on real servers: simulator (OPC-UA + mosquitto) -> linemon -> notifier ->
an HTTP receiver (ntfy publish API, webhook) and an SMTP server; the ack link through a
real uvicorn; a restart with messages waiting in the outbox."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from linemon.app import Linemon
from linemon.model import MachineState
from simulators import SimulatedPlant
from tests.notify.conftest import SMTP_PASSWORD, SMTP_USER
from tests.notify.helpers import SECRET
from tests.notify.receivers import HttpReceiver, SmtpReceiver, serving
from tests.notify.tls import server_context
from tests.support.plants import demo_config, eventually, quiet_scenario
from tests.support.services import Mosquitto, free_port

ENV = {"LINEMON_TEST_ACK_SECRET": SECRET, "LINEMON_TEST_SMTP_USER": SMTP_USER,
       "LINEMON_TEST_SMTP_PASSWORD": SMTP_PASSWORD}


# Long enough that the ack lands well before the repeat is due even on a loaded machine
# (at 2 s, a CI run acked 5 s after the first push and the repeat had gone out).
REPEAT_AFTER_LEVEL_1_S = 10


def notifications(receiver: HttpReceiver, smtp: SmtpReceiver, cert: Path, outbox: Path,
                  api_port: int) -> dict[str, Any]:
    """Level 0: the supervisor on shift (ntfy) and the line's webhook; not acknowledged in
    2 s: level 1, bob (ntfy) and the manager (e-mail); 10 s later, once more from the top."""
    return {
        "public_url": f"http://127.0.0.1:{api_port}",
        "ack_links": {"secret_env": "LINEMON_TEST_ACK_SECRET"},
        "outbox": {"path": str(outbox)},
        "retry": {"initial_s": 0.2, "max_s": 1.0},
        "channels": [
            {"kind": "ntfy", "name": "phones", "server": receiver.url},
            {"kind": "webhook", "name": "hook", "url": f"{receiver.url}/hook/line-1"},
            {"kind": "email", "name": "mail", "host": "127.0.0.1", "port": smtp.port,
             "security": "starttls", "username_env": "LINEMON_TEST_SMTP_USER",
             "password_env": "LINEMON_TEST_SMTP_PASSWORD", "sender": "linemon@plant.test",
             "ca_file": str(cert)},
        ],
        "people": [{"id": "alice", "ntfy_topic": "alice-phone"},
                   {"id": "bob", "ntfy_topic": "bob-phone"},
                   {"id": "manager", "email": "manager@plant.test"}],
        "rosters": {"supervisors": {"shifts": {"day": ["alice"]}}},
        "escalation": {"stops": {"repeat": 1, "levels": [
            {"notify": [{"channel": "phones", "to": ["roster:supervisors"]},
                        {"channel": "hook"}], "escalate_after_s": 2},
            {"notify": [{"channel": "phones", "to": ["bob"]},
                        {"channel": "mail", "to": ["manager"]}],
             "escalate_after_s": REPEAT_AFTER_LEVEL_1_S},
        ]}},
        "routes": [{"name": "stops", "match": {"rules": ["machine_stopped"]},
                    "escalation": "stops"}],
    }


@pytest.fixture
async def plant(mosquitto: Mosquitto, monkeypatch) -> AsyncIterator[SimulatedPlant]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sim = SimulatedPlant(quiet_scenario(), speed=1.0, opcua_port=0, mqtt_host="127.0.0.1",
                         mqtt_port=mosquitto.port, realtime_forever=True)
    await sim.start()
    yield sim
    await sim.stop()


@contextlib.asynccontextmanager
async def running_linemon(plant: SimulatedPlant, mosquitto: Mosquitto, data: Path,
                          n: dict[str, Any]) -> AsyncIterator[Linemon]:
    assert plant.opcua_endpoint is not None
    config = demo_config(opcua_endpoint=plant.opcua_endpoint, mqtt_port=mosquitto.port,
                         data_dir=data, notifications=n)
    lm = Linemon(config)
    await lm.start()
    try:
        await eventually(lambda: lm.engine.trackers["press-1"].state is MachineState.RUNNING,
                         30, "press-1 running")
        yield lm
    finally:
        await lm.stop()


async def test_a_stop_reaches_the_phone_the_link_acks_it_and_escalation_stops(
        plant: SimulatedPlant, mosquitto: Mosquitto, receiver: HttpReceiver,
        smtp: SmtpReceiver, certs, tmp_path: Path) -> None:
    port = free_port()
    n = notifications(receiver, smtp, certs[0], tmp_path / "outbox.sqlite", port)
    async with running_linemon(plant, mosquitto, tmp_path, n) as lm, \
            serving(create_app(lm, manage=False), port), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
        await plant.stop_machine("press-1", reason=17, for_s=REPEAT_AFTER_LEVEL_1_S + 8)
        [push] = await eventually(lambda: receiver.ntfy("alice-phone"), 10, "alice's push")
        assert push.body["title"] == "CRITICAL: line-1 / press-1: stopped"
        assert push.body["message"].startswith("press-1 stopped: Jam")
        assert push.body["click"] == f"http://127.0.0.1:{port}/phone"
        [hook] = await eventually(lambda: receiver.hooks("line-1"), 5, "the webhook")
        assert hook.body["machine"] == "press-1" and hook.key.endswith("/firing/0/hook/hook")

        # Nobody acknowledges: after 2 s, level 1 (bob's phone and the manager's mail).
        [bob] = await eventually(lambda: receiver.ntfy("bob-phone"), 10, "escalation to bob")
        assert bob.at - push.at >= 1.8 and "escalation level 1" in bob.body["message"]
        [mail] = await eventually(lambda: smtp.received, 10, "escalation mail")
        assert mail["To"] == "manager@plant.test" and "press-1" in mail["Subject"]

        # Alice taps Acknowledge: the phone POSTs the action's URL.
        [action] = push.body["actions"]
        assert (action["action"], action["method"]) == ("http", "POST")
        assert (await api.get(action["url"])).headers["content-type"].startswith("text/html")
        answer = await api.post(action["url"])
        acked_at = time.time()
        assert answer.status_code == 200, answer.text
        assert answer.json()["acknowledged_by"] == "alice via phones"
        repeat_due = push.at + 2 + REPEAT_AFTER_LEVEL_1_S
        assert acked_at < repeat_due - 2, f"acked {acked_at - push.at:.1f} s after the push"
        alerts = (await api.get("/api/v1/alerts")).json()
        [press] = [a for a in alerts if a["machine"] == "press-1"]
        assert press["acknowledged_by"] == "alice via phones"
        again = await api.post(action["url"])
        assert again.status_code == 409 and "used before" in again.json()["detail"]
        forged = await api.post(action["url"][:-3] + "AAA")
        assert forged.status_code == 403

        # The stop ends: everyone who was told hears it is over; no repeat came meanwhile
        # (without the ack, alice's phone would have rung again 12 s after the first push).
        def resolved_all() -> list[Any] | None:
            found = [r for r in receiver.received if "/resolved/" in r.key]
            return found if len(found) == 3 else None

        resolved = await eventually(resolved_all, 30, "resolved to alice, bob and the webhook")
        assert {r.body.get("topic", r.path) for r in resolved} == {
            "alice-phone", "bob-phone", "/hook/line-1"}
        assert [r.key for r in receiver.ntfy("alice-phone")].count(push.key) == 1
        assert not [r for r in receiver.received if "/firing/2/" in r.key]
        await eventually(lambda: len(smtp.received) == 2, 10, "the resolved mail")
        assert smtp.received[1]["In-Reply-To"] == mail["Message-ID"]

        log = (await api.get("/api/v1/notifications/deliveries",
                             params={"alert": press["fingerprint"]})).json()["items"]
        assert {(d["transition"], d["recipient"], d["status"]) for d in log} == {
            ("firing", "alice", "delivered"), ("firing", "hook", "delivered"),
            ("firing", "bob", "delivered"), ("firing", "manager", "delivered"),
            ("resolved", "alice", "delivered"), ("resolved", "hook", "delivered"),
            ("resolved", "bob", "delivered"), ("resolved", "manager", "delivered")}
        [used] = [d for d in log if d["link_used_at"] is not None]
        assert (used["recipient"], used["step"]) == ("alice", 0)
    assert receiver.duplicates == 0


async def test_a_restart_delivers_what_waited_once_and_does_not_call_twice(
        plant: SimulatedPlant, mosquitto: Mosquitto, certs, tmp_path: Path) -> None:
    """The receivers are down while the press stops briefly and the welder stops for long;
    linemon restarts with the receivers back: each waiting message arrives exactly once,
    and the welder's stop, still on, continues its incident instead of calling again."""
    receiver = HttpReceiver()  # not started: the receivers are down
    smtp = SmtpReceiver("starttls", server_context(*certs), {SMTP_USER: SMTP_PASSWORD})
    port = free_port()
    n = notifications(receiver, smtp, certs[0], tmp_path / "outbox.sqlite", port)
    n["routes"][0] = {"notify": [{"channel": "phones", "to": ["alice"]}, {"channel": "hook"},
                                 {"channel": "mail", "to": ["manager"]}],
                      "group_by": ["machine"]}  # two stops in one tick: two messages
    del n["escalation"]
    async with running_linemon(plant, mosquitto, tmp_path, n) as lm:
        assert lm.notifier is not None
        outbox = lm.notifier.outbox
        await plant.stop_machine("press-1", reason=17, for_s=2)
        await plant.stop_machine("weld-1", reason=23, for_s=25)

        async def waiting() -> list[Any] | None:
            rows = await outbox.deliveries(status="pending")
            tried = [r for r in rows if r.transition == "firing" and r.attempts > 0]
            return rows if len(rows) == 9 and len(tried) == 6 else None

        queued = await eventually(waiting, 20, "press: 3 firing + 3 resolved, weld: 3 firing")
    keys = {r.key for r in queued}

    await receiver.start()
    smtp.start()
    try:
        async with running_linemon(plant, mosquitto, tmp_path, n) as lm, \
                httpx.AsyncClient(transport=httpx.ASGITransport(create_app(lm, manage=False)),
                                  base_url="http://linemon") as api:
            assert lm.notifier is not None
            notifier = lm.notifier

            async def all_delivered() -> bool:
                rows = await notifier.outbox.deliveries()
                return len(rows) == 9 and all(r.status == "delivered" for r in rows)

            await eventually(all_delivered, 20, "every queued message delivered")
            # The welder is still down: the new engine fires its alert again, and it joins
            # the incident the first process opened (same id: no new message, same keys).
            [weld_incident] = {r.incident for r in queued if "weld" in r.message["body"]}
            await eventually(lambda: notifier.dispatcher.covering(weld_incident), 10,
                             "the welder's alert back in its incident")
            assert len(await notifier.outbox.deliveries()) == 9
            # Alice's link from before the restart acknowledges the welder's stop now.
            [push] = [r for r in receiver.ntfy("alice-phone") if "weld-1" in r.body["title"]]
            path = push.body["actions"][0]["url"].removeprefix(f"http://127.0.0.1:{port}")
            answer = await api.post(path)
            assert answer.status_code == 200, answer.text
            assert [a["machine"] for a in answer.json()["alerts"]] == ["weld-1"]
        http_keys = {r.key for r in receiver.received}
        mail_keys = {str(m["X-Linemon-Key"]) for m in smtp.received}
        assert http_keys | mail_keys == keys
        assert set(receiver.seen.values()) == {1} and set(smtp.seen.values()) == {1}
        alice = [r.key for r in receiver.ntfy("alice-phone") if "press" in r.body["title"]]
        assert len(alice) == 2 and "/firing/" in alice[0] and "/resolved/" in alice[1]
    finally:
        smtp.stop()
        await receiver.stop()
