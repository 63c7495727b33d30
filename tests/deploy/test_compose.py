"""deploy/docker-compose.yml, loaded and validated by Docker Compose v2 itself (no engine)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, run, tool

COMPOSE = DEPLOY / "docker-compose.yml"
OPERATOR_SECRET = "influx_admin_token"


def compose(*args: str, file: Path = COMPOSE) -> Any:
    result = run(tool("docker-compose"), "-f", file, *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    """The demo profile's fully resolved project, as compose would run it."""
    return json.loads(compose("--profile", "demo", "config", "--format", "json").stdout)


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_compose_validates_it_cleanly(profile: list[str]) -> None:
    result = compose(*profile, "config", "--quiet")
    assert result.stderr == ""  # no warnings either (obsolete keys, unset variables)


def test_compose_rejects_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    read_only: true", "    readonly: true", 1))
    result = run(tool("docker-compose"), "-f", broken, "config", "--quiet")
    assert result.returncode != 0
    assert "readonly" in result.stderr


def test_simulators_only_run_in_the_demo_profile(demo: dict[str, Any]) -> None:
    default = json.loads(compose("config", "--format", "json").stdout)
    assert {"simulators", "sim-broker"} <= demo["services"].keys()
    assert not {"simulators", "sim-broker"} & default["services"].keys()
    assert {"influxdb", "influx-tokens", "mosquitto-auth", "mosquitto", "linemon"} <= (
        default["services"].keys())


def test_images_are_pinned(demo: dict[str, Any]) -> None:
    for name, service in demo["services"].items():
        image = service["image"]
        assert re.search(r":[\w][\w.-]*$", image), f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image}"


def test_only_influxdb_and_the_token_job_see_the_operator_token(demo: dict[str, Any]) -> None:
    holders = {name for name, s in demo["services"].items()
               if any(x["source"] == OPERATOR_SECRET for x in s.get("secrets", []))}
    assert holders == {"influxdb", "influx-tokens"}
    linemon = demo["services"]["linemon"]
    assert linemon["environment"]["LINEMON_INFLUX_TOKEN_FILE"] == (
        "/run/linemon/tokens/writer.token")
    assert not any("ADMIN" in key and "INFLUX" in key for key in linemon["environment"])


def test_ports_are_published_on_loopback_only(demo: dict[str, Any]) -> None:
    published = [(name, p) for name, s in demo["services"].items() for p in s.get("ports", [])]
    assert published, "the API should be reachable from the host"
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_linemon_container_is_locked_down(demo: dict[str, Any]) -> None:
    linemon = demo["services"]["linemon"]
    assert linemon["read_only"] is True
    assert linemon["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in linemon["security_opt"]
    assert linemon["command"][-2:] == ["--host", "0.0.0.0"]  # explicit, not the image default
    mounts = {v["target"]: v for v in linemon["volumes"]}
    config = mounts["/etc/linemon/plant.yaml"]
    assert config["type"] == "bind" and config["read_only"] is True
    spool = mounts["/var/lib/linemon"]
    assert spool["type"] == "volume" and spool["source"] == "linemon-spool"
    tokens = mounts["/run/linemon/tokens"]
    assert tokens["source"] == "influx-tokens" and tokens["read_only"] is True
    assert linemon["depends_on"]["influx-tokens"]["condition"] == (
        "service_completed_successfully")
    assert demo["services"]["mosquitto"]["depends_on"]["mosquitto-auth"]["condition"] == (
        "service_completed_successfully")


def test_every_secret_the_config_names_is_provided(demo: dict[str, Any]) -> None:
    """The plant config mounted by default names env vars; the service must set each one,
    directly or as LINEMON_X_FILE pointing at a mounted secret or the token volume."""
    linemon = demo["services"]["linemon"]
    config_path = next(v["source"] for v in linemon["volumes"]
                       if v["target"] == "/etc/linemon/plant.yaml")
    config = yaml.safe_load(Path(config_path).read_text())
    wanted = {s[key] for s in config["sources"] for key in ("username_env", "password_env")
              if s.get(key)}
    wanted.add(config["historian"]["backend"]["token_env"])
    wanted |= {k["key_env"] for k in config["api"]["keys"]}
    env = linemon["environment"]
    secrets = {f"/run/secrets/{s['source']}" for s in linemon["secrets"]}
    for name in sorted(wanted):
        assert name in env or f"{name}_FILE" in env, f"{name} is not set for linemon"
        path = env.get(f"{name}_FILE")
        if path is not None:
            assert path in secrets or path.startswith("/run/linemon/tokens/"), (name, path)
    declared = demo["secrets"].keys()
    for service in demo["services"].values():
        for secret in service.get("secrets", []):
            assert secret["source"] in declared


def test_make_secrets_creates_every_declared_secret_once(tmp_path: Path,
                                                         demo: dict[str, Any]) -> None:
    target = tmp_path / "secrets"
    assert run("sh", DEPLOY / "docker" / "make-secrets.sh", target).returncode == 0
    made = {p.name: p.read_text() for p in target.iterdir()}
    assert made.keys() == {Path(s["file"]).name for s in demo["secrets"].values()}
    assert all(len(v) >= 32 and v.isalnum() for v in made.values())
    assert target.stat().st_mode & 0o777 == 0o700
    assert run("sh", DEPLOY / "docker" / "make-secrets.sh", target).returncode == 0
    assert {p.name: p.read_text() for p in target.iterdir()} == made  # kept, not regenerated
