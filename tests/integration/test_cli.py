"""The `linemon` command as a user runs it: help, check-config, and the demo end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.plants import DEMO_CONFIG, REPO
from tests.support.services import free_port

LINEMON = [sys.executable, "-m", "linemon.cli"]


def linemon(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINEMON, *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, **kwargs)


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["check-config"], ["simulate"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = linemon(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_check_config_summarizes_the_demo_plant() -> None:
    result = linemon("check-config", str(DEMO_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "machines: 5" in result.stdout
    assert "plc-line1 (opcua)" in result.stdout and "gateway-line1 (mqtt)" in result.stdout


def test_check_config_names_the_broken_field(tmp_path: Path) -> None:
    broken = DEMO_CONFIG.read_text().replace("ideal_cycle_time_s: 3.3", "ideal_cycle_time_s: 0")
    path = tmp_path / "plant.yaml"
    path.write_text(broken)
    result = linemon("check-config", str(path))
    assert result.returncode == 2
    assert "lines[0].machines[1].ideal_cycle_time_s: Input should be greater than 0" in (
        result.stderr)
    assert "(line " in result.stderr


def test_demo_serves_live_line_and_stops_cleanly(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    opcua_port, mqtt_port, api_port = free_port(), free_port(), free_port()
    data["sources"][0]["endpoint"] = f"opc.tcp://127.0.0.1:{opcua_port}"
    data["sources"][1]["port"] = mqtt_port
    config = tmp_path / "plant.yaml"
    config.write_text(yaml.safe_dump(data))
    # Files, not pipes: a chatty child must never block on a full pipe nobody reads.
    out_file, err_file = open(tmp_path / "out", "w+"), open(tmp_path / "err", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        [*LINEMON, "demo", "--config", str(config), "--port", str(api_port)],
        cwd=tmp_path, stdout=out_file, stderr=err_file, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        url = f"http://127.0.0.1:{api_port}/api/v1/lines/line-1"
        first = _wait_for_live_line(url, process)
        assert len(first["machines"]) == 5
        second = _wait_for(lambda: _changed(url, first), process, "OEE figures to change")
        assert second["at"] != first["at"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    print(out, err[-5000:])  # shown by pytest when the test fails
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert f"http://127.0.0.1:{api_port}/api/v1/lines" in out
    assert "linemon demo stopped." in out


def _wait_for_live_line(url: str, process: subprocess.Popen[str]) -> dict:
    def live():
        body = _get(url)
        if body and all(m["state"] != "offline" and m["oee"] for m in body["machines"]):
            return body
        return None

    return _wait_for(live, process, "every machine live")


def _changed(url: str, before: dict) -> dict | None:
    body = _get(url)
    if not body:
        return None
    # Counts and planned time stand still in a shift break (machines are in a planned stop),
    # so "changing" is measured by what always moves in a live view: counts or time in state.
    def moving(b: dict) -> list:
        return [(m["oee"]["total_count"] if m["oee"] else None, round(m["time_in_state_s"]))
                for m in b["machines"]]

    return body if moving(body) != moving(before) else None


def _get(url: str) -> dict | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _wait_for(probe, process: subprocess.Popen[str], what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"demo exited early with {process.returncode}")
        result = probe()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")
