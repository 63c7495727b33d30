"""deploy/systemd: the unit as systemd itself reads it, and how exposed it leaves the host."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, run, tool

UNIT = DEPLOY / "systemd" / "linemon.service"
SYSUSERS = DEPLOY / "systemd" / "linemon.sysusers"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root for `systemd-analyze verify --root`: systemd's own units (for the targets the
    unit names) and a stand-in for the binary, which verify requires to exist."""
    units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                 if p.is_dir())
    shutil.copytree(units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    binary = tmp_path / "opt/linemon/bin/linemon"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    return tmp_path


def verify(root: Path, unit_text: str) -> str:
    (root / "etc/systemd/system/linemon.service").write_text(unit_text)
    result = run(tool("systemd-analyze"), "verify", f"--root={root}", "linemon.service")
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else
                                                     f"\n(exit {result.returncode})")


def test_systemd_accepts_the_unit_without_a_word(root: Path) -> None:
    assert verify(root, UNIT.read_text()) == ""


def test_verify_catches_a_misspelt_hardening_option(root: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    assert "ProtectSytem" in verify(root, broken)


def test_exposure_score_stays_low() -> None:
    result = run(tool("systemd-analyze"), "security", "--offline=true", "--no-pager", UNIT)
    match = re.search(r"Overall exposure level for linemon\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    # 0 = fully locked down, 10 = unprotected; systemd calls below 2 "OK".
    assert float(match.group(1)) <= 1.5, result.stdout


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_agreed_policy() -> None:
    s = settings(UNIT.read_text())
    assert s["User"] == ["linemon"] and s["Group"] == ["linemon"]
    assert s["StateDirectory"] == ["linemon"] and s["ConfigurationDirectory"] == ["linemon"]
    assert s["EnvironmentFile"] == ["/etc/linemon/linemon.env"]  # no "-": missing is an error
    assert s["Restart"] == ["always"] and "StartLimitBurst" in s and "StartLimitIntervalSec" in s
    assert "MemoryMax" in s and "TasksMax" in s
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}
    for key, value in expected.items():
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    assert all("--host" not in cmd for cmd in s["ExecStart"])  # 127.0.0.1 unless configured


def test_sysusers_entry_is_valid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).write_text("root:x:0:0:root:/root:/bin/sh\n" if name ==
                                             "passwd" else "root:x:0:\n")
    result = run(tool("systemd-sysusers"), f"--root={tmp_path}", "--dry-run", SYSUSERS)
    assert result.returncode == 0, result.stderr
    assert "Creating user 'linemon'" in result.stdout + result.stderr
