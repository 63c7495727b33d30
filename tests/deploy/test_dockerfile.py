"""deploy/Dockerfile: hadolint, the properties the image must keep, and its entrypoint."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, REPO, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    result = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_base_images_are_tagged_and_never_latest() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    froms = [a.split()[0] for w, a in steps if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the image"
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.match(r"^python:3\.11[\w.-]*-slim", image), image
        assert not image.endswith(":latest")


def test_runs_as_a_fixed_non_root_user() -> None:
    users = [a for w, a in final_stage() if w == "USER"]
    assert users, "the final stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, uid  # numeric: runAsNonRoot can verify it


def test_healthcheck_probes_healthz_without_curl() -> None:
    checks = [a for w, a in final_stage() if w == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "python" in checks[0] and "urllib" in checks[0]
    commands = " ".join(a for _, a in instructions())
    assert "curl" not in commands and "wget" not in commands
    env = " ".join(a for w, a in final_stage() if w == "ENV")
    assert "LINEMON_HEALTH_URL=http://127.0.0.1:8000/healthz" in env


def test_default_command_reads_the_config_and_binds_loopback() -> None:
    cmd = json.loads(next(a for w, a in final_stage() if w == "CMD"))
    assert cmd == ["linemon", "run", "--config", "/etc/linemon/plant.yaml"]
    entrypoint = json.loads(next(a for w, a in final_stage() if w == "ENTRYPOINT"))
    assert entrypoint == ["/usr/local/bin/linemon-entrypoint"]


def test_image_gets_every_package_and_only_runtime_dependencies() -> None:
    """The COPY lines must follow pyproject's package list, and the build context allow-list
    (Dockerfile.dockerignore) must let each COPY source through."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = project["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in find["include"]}
    copies = [a for w, a in instructions() if w == "COPY" and "--from=" not in a]
    sources = [part for a in copies for part in a.split()[:-1] if not part.startswith("--")]
    copied_dirs = {s.rstrip("/") for s in sources if s.endswith("/")}
    assert packages == copied_dirs
    assert {"pyproject.toml", project["project"]["readme"]} <= set(sources)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [r for r in ignore if r and not r.startswith("#")]
    for source in sources:
        included = False
        for rule in rules:
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(source.rstrip("/"), pattern):
                included = rule.startswith("!")
        assert included, f"COPY {source}: excluded by Dockerfile.dockerignore"
    assert "test" not in " ".join(a for w, a in instructions() if w == "RUN")  # no extras


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cr3t value\n")
    return path


def entrypoint(env: dict[str, str], *command: str):
    base = {"PATH": os.environ["PATH"]}
    return run("sh", ENTRYPOINT, *command, env={**base, **env})


def test_entrypoint_turns_secret_files_into_variables(secret_file: Path) -> None:
    result = entrypoint({"LINEMON_INFLUX_TOKEN_FILE": str(secret_file),
                         "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem"}, "env")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["LINEMON_INFLUX_TOKEN"] == "s3cr3t value"  # trailing newline dropped
    assert "LINEMON_INFLUX_TOKEN_FILE" not in env
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca.pem"  # a path, left alone


def test_entrypoint_refuses_a_missing_or_doubled_secret(secret_file: Path,
                                                        tmp_path: Path) -> None:
    missing = entrypoint({"LINEMON_KEY_ADMIN_FILE": str(tmp_path / "nope")}, "true")
    assert missing.returncode == 2 and "LINEMON_KEY_ADMIN_FILE" in missing.stderr
    doubled = entrypoint({"LINEMON_KEY_ADMIN_FILE": str(secret_file),
                          "LINEMON_KEY_ADMIN": "other"}, "true")
    assert doubled.returncode == 2 and "both" in doubled.stderr
