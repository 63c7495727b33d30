"""The notification routes on the API tests' plant (keys for every role, a scripted hour):
the delivery log with its filters and line scope, and the ack link's refusals."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from linemon.app import Linemon
from rules.notify.config import NotificationsConfig
from rules.rules_config import RulesConfig
from tests.api.conftest import Api, running_plant, serving_api
from tests.api.plant import BASE, NOW, PlantClock, plant_config, play_history
from tests.notify.helpers import SECRET
from tests.notify.receivers import HttpReceiver
from tests.support.plants import eventually


@contextlib.asynccontextmanager
async def notifying_api(tmp_path: Path, receiver: HttpReceiver, monkeypatch,
                        **api: object) -> AsyncIterator[Api]:
    monkeypatch.setenv("LINEMON_TEST_ACK_SECRET", SECRET)
    n = NotificationsConfig.model_validate({
        "public_url": "http://linemon.test:8000",
        "ack_links": {"secret_env": "LINEMON_TEST_ACK_SECRET", "ttl_s": 3600},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "channels": [{"kind": "ntfy", "name": "phones", "server": receiver.url}],
        "people": [{"id": "alice", "ntfy_topic": "alice-phone"}],
        "routes": [{"match": {"rules": ["machine_stopped"]},
                    "notify": [{"channel": "phones", "to": ["alice"]}]}],
    })
    # Every scripted stop pages at once (a plant waits 30 s; some of the hour's stops are short).
    rules = RulesConfig.model_validate({"machine_stop": {"after_s": 0}})
    config = plant_config(tmp_path, **api).model_copy(update={"notifications": n, "rules": rules})
    clock = PlantClock(BASE)
    lm = Linemon(config, clock)
    assert lm.notifier is not None
    await lm.historian.start()
    await lm.notifier.start(lm.listen())
    try:
        await play_history(lm, clock)  # five stops in the hour: five pushes, four resolved
        await eventually(lambda: len(receiver.received) == 9, 10, "the hour's pushes")
        async with serving_api(lm, clock) as a:
            yield a
    finally:
        await lm.stop()


async def test_the_delivery_log_filters_and_keeps_to_a_keys_lines(
        tmp_path: Path, receiver: HttpReceiver, monkeypatch) -> None:
    async with notifying_api(tmp_path, receiver, monkeypatch) as api:
        page = await api.json("/api/v1/notifications/deliveries", "viewer")
        items = page["items"]
        assert len(items) == 9 and {d["status"] for d in items} == {"delivered"}
        assert [d["id"] for d in items] == sorted((d["id"] for d in items), reverse=True)
        assert "address" not in items[0]  # an ntfy topic is as good as a password
        weld = next(a for a in await api.json("/api/v1/alerts", "viewer")
                if a["machine"] == "weld-a2")
        mine = await api.json("/api/v1/notifications/deliveries", "viewer",
                              params={"alert": weld["fingerprint"]})
        # Its stop at 40-44 and the one still open since 60: two occurrences, newest first.
        assert [d["transition"] for d in mine["items"]] == ["firing", "resolved", "firing"]
        assert len({d["incident"] for d in mine["items"]}) == 2
        line_b = await api.json("/api/v1/notifications/deliveries", "viewer-b")
        assert {d["line"] for d in line_b["items"]} == {"line-b"}
        first = await api.json("/api/v1/notifications/deliveries", "viewer",
                               params={"limit": 4})
        assert len(first["items"]) == 4 and first["next_before"] == first["items"][-1]["id"]
        rest = await api.json("/api/v1/notifications/deliveries", "viewer",
                              params={"before": first["next_before"], "limit": 100})
        assert len(rest["items"]) == 5 and rest["next_before"] is None
        assert (await api.get("/api/v1/notifications/deliveries", None)).status_code == 401
        assert (await api.get("/api/v1/notifications/deliveries", "viewer",
                              params={"status": "lost"})).status_code == 422


async def test_ack_link_refusals(tmp_path: Path, receiver: HttpReceiver, monkeypatch) -> None:
    async with notifying_api(tmp_path, receiver, monkeypatch,
                             auth_failures_per_minute=3) as api:
        old, live = [r.body["actions"][0]["url"].removeprefix("http://linemon.test:8000")
                     for r in receiver.ntfy() if "actions" in r.body][-2:]
        gone = await api.call("POST", old, None)  # press-a1's stop at 50-58 is over
        assert gone.status_code == 404 and "no longer active" in gone.json()["detail"]
        api.clock.now = NOW + timedelta(hours=1)
        expired = await api.call("POST", live, None)
        assert expired.status_code == 410 and "expired" in expired.json()["detail"]
        api.clock.now = NOW
        for _ in range(3):
            forged = await api.call("POST", live[:-4] + "AAAA", None)
            assert forged.status_code == 403
        throttled = await api.call("POST", live, None)
        assert throttled.status_code == 429 and "Retry-After" in throttled.headers


async def test_without_notifications_there_are_no_such_routes(tmp_path: Path) -> None:
    async with running_plant(tmp_path, history=False) as (lm, clock), \
            serving_api(lm, clock) as api:
        assert (await api.get("/api/v1/notifications/deliveries")).status_code == 404
        paths = api.app.openapi()["paths"]
        assert not [p for p in paths if "ack-link" in p or "notifications" in p]

