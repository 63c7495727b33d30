"""The compose stack's own files, run without Docker: same configs, scripts and commands.

No Docker engine runs on the build machines, so the services of deploy/docker-compose.yml
run here as local processes on free ports: the secrets from make-secrets.sh, the broker
with the password file from make-passwd.sh and the ACL, the demo bridge, influxd
onboarded as the image's DOCKER_INFLUXDB_INIT_* does it, the scoped tokens from
influx-tokens.py, the simulators with the compose command, and linemon through the
image's entrypoint with the compose environment. Only host names, ports and the
container paths of mounts are rewritten.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.tools import DEPLOY, REPO, run, tool
from tests.support.influx import InfluxServer, find_influxd
from tests.support.services import free_port, mosquitto_binary, wait_for_port

MACHINES = {"press-1", "weld-1", "paint-1", "inspect-1", "pack-1"}


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Stack:
    root: Path
    compose: dict[str, Any]
    secrets: Path
    tokens: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    influx: InfluxServer | None = None

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def env(self, service: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The service's compose environment, container paths mapped to this host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LINEMON_", "INFLUX"))}
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/sbin:{env.get('PATH', '/usr/bin')}"
        for key, value in self.compose["services"][service].get("environment", {}).items():
            value = re.sub(r"^/run/secrets(?=/|$)", str(self.secrets), value)
            env[key] = re.sub(r"^/run/linemon/tokens(?=/|$)", str(self.tokens), value)
        return {**env, **(extra or {})}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        self.procs.append((name, subprocess.Popen(args, stdout=log, stderr=log, env=env,
                                                  cwd=REPO)))

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p in self.procs if n == name)

    def stop(self) -> None:
        """Like `docker compose down`: dependents first, each given time to stop cleanly."""
        for _, proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.influx is not None:
            self.influx.stop()


def rewrite_mosquitto_conf(text: str, listener: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    text = re.sub(r"^listener 1883$", f"listener {listener}", text, flags=re.M)
    if os.geteuid() == 0:
        # mosquitto drops to its own user when started as root, and pytest's temp dirs are
        # private to root; in the containers the files are the mosquitto user's.
        text += "\nuser root\n"
    return text


def onboard_like_the_image(influx: InfluxServer, env: dict[str, str]) -> None:
    """What influxdb:2.7's entrypoint does with DOCKER_INFLUXDB_INIT_MODE=setup."""
    days = re.fullmatch(r"(\d+)d", env["DOCKER_INFLUXDB_INIT_RETENTION"])
    assert days, "the test knows retention in days only"
    setup = influx.api("POST", "/api/v2/setup", {
        "username": env["DOCKER_INFLUXDB_INIT_USERNAME"],
        "password": Path(env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"]).read_text().strip(),
        "org": env["DOCKER_INFLUXDB_INIT_ORG"],
        "bucket": env["DOCKER_INFLUXDB_INIT_BUCKET"],
        "retentionPeriodSeconds": int(days.group(1)) * 86_400,
        "token": Path(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"]).read_text().strip()})
    influx.operator_token = setup["auth"]["token"]
    influx.org_id = setup["org"]["id"]


def linemon_config(stack: Stack, source: Path) -> Path:
    data = yaml.safe_load(source.read_text())
    opcua, broker = data["sources"]
    backend = data["historian"]["backend"]
    # The names and ports the config uses are the compose services'.
    assert opcua["endpoint"] == "opc.tcp://simulators:4840"
    assert (broker["host"], broker["port"]) == ("mosquitto", 1883)
    assert backend["url"] == "http://influxdb:8086"
    assert {"simulators", "mosquitto", "influxdb"} <= stack.compose["services"].keys()
    opcua["endpoint"] = f"opc.tcp://127.0.0.1:{stack.ports['opcua']}"
    broker["host"], broker["port"] = "127.0.0.1", stack.ports["site"]
    backend["url"] = stack.influx.url if stack.influx else ""
    data["historian"]["spool"]["path"] = str(stack.root / "spool.sqlite")
    path = stack.root / "plant.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    result = run(tool("docker-compose"), "-f", DEPLOY / "docker-compose.yml",
                 "--profile", "demo", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    root = tmp_path_factory.mktemp("stack")
    s = Stack(root=root, compose=json.loads(result.stdout), secrets=root / "secrets",
              tokens=root / "tokens")
    s.ports = {name: free_port() for name in ("site", "sim", "opcua", "api")}
    try:
        # secrets, then the broker's password file (service mosquitto-auth)
        assert run("sh", DEPLOY / "docker/make-secrets.sh", s.secrets).returncode == 0
        (root / "auth").mkdir()
        made = run("sh", DEPLOY / "mosquitto/make-passwd.sh",
                   env=s.env("mosquitto-auth", {"PASSWD_FILE": str(root / "auth/passwd")}))
        assert made.returncode == 0, made.stderr
        # the site broker (service mosquitto)
        (root / "data").mkdir()
        conf = root / "mosquitto.conf"
        conf.write_text(rewrite_mosquitto_conf(
            (DEPLOY / "mosquitto/mosquitto.conf").read_text(), f"{s.ports['site']} 127.0.0.1",
            {"/mosquitto/auth/passwd": str(root / "auth/passwd"),
             "/mosquitto/config/acl": str(DEPLOY / "mosquitto/acl"),
             "/mosquitto/data/": f"{root}/data/"}))
        s.start("mosquitto", [mosquitto_binary(), "-c", str(conf)], s.env("mosquitto"))
        wait_for_port(s.ports["site"])
        # the demo bridge (service sim-broker)
        template = root / "demo-bridge.conf"
        template.write_text(rewrite_mosquitto_conf(
            (DEPLOY / "mosquitto/demo-bridge.conf").read_text(), f"{s.ports['sim']} 127.0.0.1",
            {"address mosquitto:1883": f"address 127.0.0.1:{s.ports['site']}"}))
        s.start("sim-broker", ["sh", str(DEPLOY / "mosquitto/run-demo-bridge.sh")],
                s.env("sim-broker", {"BRIDGE_TEMPLATE": str(template),
                                     "BRIDGE_CONF": str(root / "bridge.conf")}))
        wait_for_port(s.ports["sim"])
        # influxd, onboarded (service influxdb), then the scoped tokens (influx-tokens)
        binary = find_influxd()
        assert binary is not None, "influxd not built; `make test` builds it"
        (root / "influxd").mkdir()
        s.influx = InfluxServer(binary, root / "influxd")
        s.influx.start()
        onboard_like_the_image(s.influx, s.env("influxdb"))
        s.tokens.mkdir()
        tokens = run(sys.executable, DEPLOY / "docker/influx-tokens.py",
                     env=s.env("influx-tokens", {"INFLUX_URL": s.influx.url}))
        assert tokens.returncode == 0, tokens.stderr
        # simulators, with the compose command
        command = s.compose["services"]["simulators"]["command"]
        assert command[:2] == ["linemon", "simulate"]
        args = [sys.executable, "-m", "linemon.cli", *command[1:]]
        swaps = {"/etc/linemon/scenarios": str(REPO / "simulators/scenarios"),
                 "sim-broker": "127.0.0.1", "0.0.0.0": "127.0.0.1"}
        for old, new in swaps.items():
            args = [a.replace(old, new) for a in args]
        args[args.index("--opcua-port") + 1] = str(s.ports["opcua"])
        args[args.index("--mqtt-port") + 1] = str(s.ports["sim"])
        s.start("simulators", args, s.env("simulators"))
        # linemon: the image's entrypoint, the compose environment and config
        service = s.compose["services"]["linemon"]
        mounted = next(v["source"] for v in service["volumes"]
                       if v["target"] == "/etc/linemon/plant.yaml")
        config = linemon_config(s, Path(mounted))
        cmd = service["command"]
        assert cmd[:4] == ["linemon", "run", "--config", "/etc/linemon/plant.yaml"]
        s.start("linemon", ["sh", str(DEPLOY / "docker/entrypoint.sh"), sys.executable, "-m",
                            "linemon.cli", "run", "--config", str(config), "--host",
                            "127.0.0.1", "--port", str(s.ports["api"])], s.env("linemon"))
        yield s
    finally:
        s.stop()


def api(stack: Stack, path: str, key: str | None = "linemon_key_admin") -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.secret(key)}"} if key else {}
    return httpx.get(f"http://127.0.0.1:{stack.ports['api']}{path}", headers=headers, timeout=5)


def live_states(stack: Stack) -> dict[str, str]:
    for name, proc in stack.procs:
        assert proc.poll() is None, f"{name} exited:\n{stack.log(name)}"
    try:
        line = api(stack, "/api/v1/lines/line-1")
    except httpx.TransportError:
        return {}
    return {m["machine"]: m["state"] for m in line.json()["machines"]} if line.is_success else {}


def test_every_machine_reaches_linemon_through_the_secured_broker(stack: Stack) -> None:
    wait_until(lambda: (s := live_states(stack)) and all(v != "offline" for v in s.values())
               and s, 30, "all five machines online (OPC-UA direct, MQTT via the bridge)")
    assert live_states(stack).keys() == MACHINES
    ready = wait_until(lambda: api(stack, "/readyz", key=None).status_code == 200, 15,
                       "/readyz: both sources connected, historian reachable")
    assert ready


def influx_count(stack: Stack, bucket: str, token: str | None = None) -> int:
    rows = stack.influx.query_csv(  # type: ignore[union-attr]
        f'from(bucket: "{bucket}") |> range(start: -1h) |> group() |> count()', token=token)
    return sum(int(r.get("_value") or 0) for r in rows)


def test_history_lands_in_influxdb_with_the_writer_token(stack: Stack) -> None:
    wait_until(lambda: live_states(stack) and influx_count(stack, "linemon") > 0, 30,
               "samples in the linemon bucket")
    reader = (stack.tokens / "reader.token").read_text()
    assert influx_count(stack, "linemon", token=reader) > 0  # and the reader can read them


def influx_status(stack: Stack, method: str, path: str, token: str, body: Any = None) -> int:
    req = urllib.request.Request(stack.influx.url + path, method=method,  # type: ignore[union-attr]
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Token {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_linemon_tokens_are_scoped(stack: Stack) -> None:
    writer = (stack.tokens / "writer.token").read_text()
    reader = (stack.tokens / "reader.token").read_text()
    assert writer != stack.secret("influx_admin_token")
    org = stack.influx.org_id  # type: ignore[union-attr]
    write = f"/api/v2/write?orgID={org}&bucket=linemon&precision=ns"
    req = urllib.request.Request(stack.influx.url + write, method="POST",  # type: ignore[union-attr]
                                 data=b"probe,machine=x value=1")
    req.add_header("Authorization", f"Token {reader}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code in (401, 403)
    grant = {"orgID": org, "description": "escalation", "permissions": [
        {"action": "write", "resource": {"type": "authorizations", "orgID": org}}]}
    for token in (writer, reader):
        # No way to mint more tokens, see the others' or add buckets.
        assert influx_status(stack, "POST", "/api/v2/authorizations", token, grant) in (401, 403)
        assert stack.influx.api("GET", "/api/v2/authorizations",  # type: ignore[union-attr]
                                token=token)["authorizations"] == []
        assert influx_status(stack, "POST", "/api/v2/buckets", token,
                             {"orgID": org, "name": "intruder"}) in (401, 403)
    assert (stack.tokens / "writer.token").stat().st_mode & 0o777 == 0o440
    again = run(sys.executable, DEPLOY / "docker/influx-tokens.py",
                env=stack.env("influx-tokens", {"INFLUX_URL": stack.influx.url}))  # type: ignore[union-attr]
    assert again.returncode == 0 and "writer token kept" in again.stderr, again.stderr
    assert (stack.tokens / "writer.token").read_text() == writer


def connect(stack: Stack, user: str | None, password: str | None) -> tuple[mqtt.Client, Any]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    result: dict[str, Any] = {}
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
    client.connect("127.0.0.1", stack.ports["site"])
    client.loop_start()
    wait_until(lambda: "rc" in result, 5, "CONNACK")
    return client, result["rc"]


def test_broker_wants_a_login_and_linemon_only_reads_machine_topics(stack: Stack) -> None:
    anonymous, rc = connect(stack, None, None)
    anonymous.loop_stop()
    assert rc.is_failure
    password = stack.secret("mqtt_linemon_password")
    wrong, rc = connect(stack, "linemon", password + "x")
    wrong.loop_stop()
    assert rc.is_failure
    client, rc = connect(stack, "linemon", password)
    acks: dict[int, Any] = {}
    client.on_publish = lambda c, u, mid, reason, props: acks.setdefault(mid, reason)
    try:
        assert not rc.is_failure
        seen: list[str] = []
        client.on_message = lambda c, u, m: seen.append(m.topic)
        client.subscribe("plant/line-1/#", qos=1)
        wait_until(lambda: seen, 10, "a retained machine value")  # reading: allowed
        # MQTT v5 answers a publish the ACL refuses with "Not authorized" in the PUBACK.
        refused = client.publish("plant/line-1/press-1/state_code", b'{"value": 4}', qos=1)
        allowed = client.publish("linemon/v1/probe", b"{}", qos=1)
        wait_until(lambda: {refused.mid, allowed.mid} <= acks.keys(), 5, "both PUBACKs")
        assert acks[refused.mid].getName() == "Not authorized"
        assert not acks[allowed.mid].is_failure
    finally:
        client.disconnect()
        client.loop_stop()


def test_api_wants_a_key(stack: Stack) -> None:
    wait_until(lambda: live_states(stack), 30, "the API")
    assert api(stack, "/api/v1/lines", key=None).status_code == 401
    board = api(stack, "/api/v1/lines/line-1", key="linemon_key_board")
    assert board.status_code == 200


def test_linemon_stops_cleanly_within_the_grace_period(stack: Stack) -> None:
    """SIGTERM, as `docker compose stop` sends it: a clean shutdown well inside
    stop_grace_period. uvicorn re-raises the signal once it has shut down, so the exit
    status is "killed by SIGTERM" (which Docker and systemd count as a clean stop); the
    broker's log shows the difference from a crash: an MQTT DISCONNECT, not a lost socket."""
    grace = float(stack.compose["services"]["linemon"]["stop_grace_period"].rstrip("s"))
    client_id = yaml.safe_load((stack.root / "plant.yaml").read_text())["sources"][1]["client_id"]
    linemon = stack.proc("linemon")
    assert linemon.poll() is None
    start = time.monotonic()
    linemon.terminate()
    assert linemon.wait(grace) in (0, -signal.SIGTERM), stack.log("linemon")
    assert time.monotonic() - start < grace / 2
    wait_until(lambda: f"Client {client_id} disconnected." in stack.log("mosquitto"), 5,
               "a clean MQTT disconnect in the broker's log")


def test_rotation_replaces_the_tokens_and_revokes_the_old(stack: Stack) -> None:
    """After linemon has stopped: what `docker compose run --rm influx-tokens --rotate` does."""
    old = (stack.tokens / "writer.token").read_text()
    rotated = run(sys.executable, DEPLOY / "docker/influx-tokens.py", "--rotate",
                  env=stack.env("influx-tokens", {"INFLUX_URL": stack.influx.url}))  # type: ignore[union-attr]
    assert rotated.returncode == 0, rotated.stderr
    new = (stack.tokens / "writer.token").read_text()
    assert new != old
    assert influx_count(stack, "linemon", token=new) > 0
    with pytest.raises(urllib.error.HTTPError) as revoked:
        influx_count(stack, "linemon", token=old)
    assert revoked.value.code == 401
