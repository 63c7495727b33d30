"""Source settings that cannot work are refused at start-up, each with its path and line."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import yaml

from collector.sources.base import SourceConfigError, SourceStats
from collector.sources.supervisor import Backoff, supervise
from linemon.config import ConfigError, parse_config
from linemon.model import Sample
from tests.support.plants import ALL_DAY, eventually

OPCUA = {"kind": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840"}
JSON = {"kind": "mqtt", "name": "gw"}
SPARKPLUG = {"kind": "mqtt", "name": "spb", "format": "sparkplug", "group_id": "plant"}


def plant_yaml(source: dict[str, Any], tag: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "site": {"name": "t"}, "calendar": ALL_DAY, "sources": [source],
        "lines": [{"id": "line-1", "machines": [{
            "id": "m-1", "source": source["name"], "ideal_cycle_time_s": 1.0,
            "tags": {"state": tag}}]}]}, sort_keys=False)


CASES = [
    (SPARKPLUG, {"topic": "spBv1.0/plant/+/e/d"}, "lines[0].machines[0].tags.state.topic",
     "names one topic: no '+' or '#'"),
    (SPARKPLUG, {"topic": "plant/x", "metric": "StateCode", "device": "e/d"},
     "lines[0].machines[0].tags.state.topic", "'topic' is for JSON payloads; a Sparkplug B tag"),
    (SPARKPLUG, {"metric": "StateCode"}, "lines[0].machines[0].tags.state.device",
     "a Sparkplug B tag needs a 'device': '<edge node id>/<device id>'"),
    (SPARKPLUG, {"device": "e/d"}, "lines[0].machines[0].tags.state.metric",
     "a Sparkplug B tag needs a 'metric'"),
    (SPARKPLUG, {"device": "e/d/x", "metric": "S"}, "lines[0].machines[0].tags.state.device",
     "expected '<edge node id>/<device id>' or '<edge node id>'"),
    (SPARKPLUG, {"device": "e/d", "metric": "S", "field": "v"},
     "lines[0].machines[0].tags.state.field", "'field' is for JSON payloads"),
    ({**SPARKPLUG, "group_id": None}, {"device": "e/d", "metric": "S"}, "sources[0].group_id",
     "format sparkplug needs the Sparkplug B group id"),
    ({**SPARKPLUG, "shared_group": "g"}, {"device": "e/d", "metric": "S"},
     "sources[0].shared_group", "shared subscriptions would split them"),
    (JSON, {"topic": "a/b", "metric": "S"}, "lines[0].machines[0].tags.state.metric",
     "'metric' is for Sparkplug B sources (format: sparkplug)"),
    (JSON, {"topic": "plant/{site}/x"}, "lines[0].machines[0].tags.state.topic",
     "the only placeholders are {line} and {machine}"),
    (JSON, {"topic": "a/b", "deadband": 1.0}, "lines[0].machines[0].tags.state.deadband",
     "'deadband' is for OPC-UA tags"),
    ({**JSON, "group_id": "x"}, {"topic": "a/b"}, "sources[0].group_id",
     "group_id is for format: sparkplug"),
    ({**JSON, "ca_file": "ca.pem"}, {"topic": "a/b"}, "sources[0].ca_file",
     "ca_file needs tls: true"),
    (OPCUA, {"node": "ns=2;s=x", "metric": "S"}, "lines[0].machines[0].tags.state.metric",
     "'metric' is for Sparkplug B sources; this machine reads OPC-UA"),
    ({**OPCUA, "security": {"policy": "Basic128Rsa15", "mode": "Sign"}}, {"node": "ns=2;s=x"},
     "sources[0].security.policy", "Basic128Rsa15 is deprecated"),
    ({**OPCUA, "security": {"policy": "Basic256Sha256"}}, {"node": "ns=2;s=x"},
     "sources[0].security.mode", "a security policy needs mode Sign or SignAndEncrypt"),
    ({**OPCUA, "security": {"policy": "Aes128_Sha256_RsaOaep", "mode": "Sign",
                            "certificate": "c.der", "private_key": "k.pem"}},
     {"node": "ns=2;s=x"}, "sources[0].security.trusted_server_certificates",
     "does not trust a server on first use"),
]


@pytest.mark.parametrize(("source", "tag", "path", "message"), CASES,
                         ids=[c[2].rsplit(".", 1)[-1] + ":" + c[3][:24] for c in CASES])
def test_refused_with_its_path_and_line(source: dict[str, Any], tag: dict[str, Any], path: str,
                                        message: str) -> None:
    source = {k: v for k, v in source.items() if v is not None}
    text = plant_yaml(source, tag)
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    (issue,) = [i for i in refused.value.issues if i.path == path]
    assert message in issue.message
    key = path.rsplit(".", 1)[-1]
    assert issue.line is not None
    if f"{key}:" in text:  # the line of the key; of its parent when the key is missing
        assert key in text.splitlines()[issue.line - 1]


def test_a_sparkplug_plant_is_valid() -> None:
    tag = {"device": "line-1/press-1", "metric": "Inputs/State Code", "type": "int"}
    config = parse_config(plant_yaml(SPARKPLUG, tag))
    assert config.machines()[0][1].tags["state"].metric == "Inputs/State Code"


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(initial_s=0.5, cap_s=30.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 30.0 and len(set(delays)) == 12
    backoff.reset()
    assert backoff.next() <= 0.5


class _Refusing:
    """A source whose settings cannot work: it raises SourceConfigError on every attempt."""

    name, machines = "bad", ["m-1"]

    def __init__(self) -> None:
        self.stats, self.attempts = SourceStats(), 0

    async def run(self, emit: Any) -> None:
        self.attempts += 1
        raise SourceConfigError("certificate not trusted")

    def outage(self, at: Any) -> list[Sample]:
        return []


async def test_hopeless_settings_wait_the_longest_backoff() -> None:
    source = _Refusing()
    started = time.monotonic()
    task = asyncio.create_task(supervise(source, _ignore, on_gap=lambda *_: None,
                                         backoff=Backoff(initial_s=0.01, cap_s=0.3)))
    await eventually(lambda: source.attempts == 2, 5, "the second attempt")
    task.cancel()
    assert time.monotonic() - started >= 0.3  # after the cap, not after 10 ms
    assert source.stats.last_error == "certificate not trusted" and source.stats.gaps == []


async def _ignore(_samples: list[Sample]) -> None:
    return None
