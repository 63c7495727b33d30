"""The `notifications:` config: the demo example validates; mistakes name their path and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from linemon.app import Linemon
from linemon.config import ConfigError, parse_config
from rules.notify.tokens import AckSigner, TokenError
from tests.notify.helpers import SECRET, t
from tests.support.plants import DEMO_CONFIG

EXAMPLE = Path(__file__).with_name("example_notifications.yaml")


def demo_with(notifications: dict[str, Any]) -> str:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["notifications"] = notifications
    return yaml.safe_dump(data, sort_keys=False)


def issues(notifications: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(demo_with(notifications))
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())["notifications"]


def test_the_demo_example_is_valid() -> None:
    config = parse_config(demo_with(example()))
    n = config.notifications
    assert n.active and [c.kind for c in n.channels] == ["ntfy", "webhook", "email", "mqtt"]
    assert n.routes[0].group_wait_s == 3 and n.escalation["stops"].repeat == 1


def test_a_plant_without_notifications_builds_no_notifier() -> None:
    config = parse_config(DEMO_CONFIG.read_text())
    assert not config.notifications.active
    assert Linemon(config).notifier is None


@pytest.mark.parametrize(("change", "expected"), [
    (lambda n: n["routes"][0].update(escalation="nope"),
     "notifications.routes[0].escalation: no escalation policy 'nope' (stops)"),
    (lambda n: n["routes"][1]["notify"][0].update(channel="pager"),
     "notifications.routes[1].notify[0].channel: unknown channel 'pager' "
     "(andon, mail, phones, slack)"),
    (lambda n: n["rosters"]["line1-supervisors"]["shifts"].update(evening=["anna"]),
     "notifications.rosters.line1-supervisors.shifts.evening: no shift 'evening' in the "
     "calendar (early, late, night)"),
    (lambda n: n["escalation"]["stops"]["levels"][1]["notify"][0].update(to=["anna"]),
     "notifications.escalation.stops.levels[1].notify[0].to[0]: 'anna' has no email"),
    (lambda n: n["escalation"]["stops"]["levels"][0]["notify"][1].update(to=["anna"]),
     "notifications.escalation.stops.levels[0].notify[1].to: a mqtt channel has its own "
     "destination; it takes no people"),
    (lambda n: n["routes"][1]["notify"][0].update(to=["line1-supervisors"]),
     "notifications.routes[1].notify[0].to[0]: unknown person 'line1-supervisors'; or did "
     "you mean 'roster:line1-supervisors'?"),
    (lambda n: n["routes"][0]["match"].update(machines=["press-9"]),
     "notifications.routes[0].match.machines[0]: unknown machine 'press-9'"),
    (lambda n: n["channels"][0].update(server="ntfy.sh"),
     "notifications.channels[0].server: String should match pattern '^https?://[^\\s/]+.*$'"),
    (lambda n: n["channels"][0].update(kind="pager"),
     "notifications.channels[0].kind: unknown kind 'pager'; expected one of: 'ntfy', "
     "'webhook', 'email', 'mqtt'"),
    (lambda n: n["routes"][1].update(escalation="stops"),
     "notifications.routes[1]: give exactly one of `notify` or `escalation`"),
    (lambda n: n["escalation"]["stops"]["levels"][0].pop("escalate_after_s"),
     "notifications.escalation.stops: levels[0] has no escalate_after_s: levels after it "
     "would never be reached"),
    (lambda n: n.pop("public_url"),
     "notifications: ack_links need public_url (the address phones reach linemon at)"),
])
def test_mistakes_name_their_path(change, expected: str) -> None:
    n = example()
    change(n)
    assert expected in issues(n)


def test_an_error_says_its_line() -> None:
    n = example()
    n["routes"][0]["escalation"] = "nope"
    with pytest.raises(ConfigError) as caught:
        parse_config(demo_with(n))
    [issue] = caught.value.issues
    assert issue.line is not None and "escalation: nope" in demo_with(n).splitlines()[
        issue.line - 1]


def test_the_ack_secret_comes_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    n = {**example(), "outbox": {"path": str(tmp_path / "outbox.sqlite")}}
    for env in ("LINEMON_NTFY_TOKEN", "LINEMON_SLACK_WEBHOOK", "LINEMON_SMTP_USER",
                "LINEMON_SMTP_PASSWORD"):
        monkeypatch.setenv(env, "x" * 40 if env != "LINEMON_SLACK_WEBHOOK" else
                           "https://hooks.slack.test/services/x")
    config = parse_config(demo_with(n))
    monkeypatch.delenv("LINEMON_ACK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="LINEMON_ACK_SECRET is not set"):
        Linemon(config)
    monkeypatch.setenv("LINEMON_ACK_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        Linemon(config)
    monkeypatch.setenv("LINEMON_ACK_SECRET", SECRET)
    assert Linemon(config).notifier is not None


def test_ack_tokens_are_signed_expire_and_name_one_delivery() -> None:
    signer = AckSigner(SECRET, ttl_s=600)
    token, signed = signer.sign("incident/firing/0/phones/alice", t(0))
    assert len(token) < 60  # short enough for any URL and any ntfy action
    assert signer.verify(token, t(599)) == signed
    with pytest.raises(TokenError) as expired:
        signer.verify(token, t(600))
    assert expired.value.reason == "expired"
    body, mac = token.split(".")
    tampered = f"{body[:-2]}AA.{mac}"
    for bad in (tampered, f"{body}.{mac[::-1]}", "nonsense", "a.b",
                AckSigner("another-plant-secret-0123456789abcdef", 600).sign("k", t(0))[0]):
        with pytest.raises(TokenError) as caught:
            signer.verify(bad, t(1))
        assert caught.value.reason == "invalid"


def test_notify_never_reads_the_wall_clock() -> None:
    """The clock is injected everywhere, the I/O parts included; waits are on events."""
    banned = re.compile(r"datetime\.now\(|time\.time\(|asyncio\.sleep\(|datetime\.utcnow\(")
    files = list(Path("rules/notify").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        assert not banned.search(path.read_text(encoding="utf-8")), path
