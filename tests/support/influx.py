"""A real influxd for the tests: found in the build cache, started on a free port, onboarded.

The binary is built once by deploy/influxdb/build-influxd.sh; `make test` runs it first.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = "deploy/influxdb/build-influxd.sh"
TOKEN_ENV = "LINEMON_TEST_INFLUX_TOKEN"
ORG = "linemon-test"


def find_influxd() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("LINEMON_INFLUXD"):
        candidates.append(Path(os.environ["LINEMON_INFLUXD"]))
    recorded = REPO / ".cache" / "influxd-path"
    if recorded.is_file():
        candidates.append(Path(recorded.read_text().strip()))
    cache = Path.home() / ".cache" / "linemon"
    candidates += sorted(cache.glob("influxd-*/influxd"), key=lambda p: p.stat().st_mtime,
                         reverse=True)
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class InfluxServer:
    """One influxd process on a fixed port and data dir; can be killed and restarted."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.binary, self.root = binary, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.operator_token = ""
        self.token = ""
        self.org_id = ""
        self._log: Any = None

    def start(self) -> None:
        log = self._log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - closed in _reap
        # influxd reads INFLUXD_* variables and a config file in its config path or cwd.
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXD_")}
        env["INFLUXD_CONFIG_PATH"] = str(self.root)
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--reporting-disabled", "--log-level=error",
             f"--http-bind-address=127.0.0.1:{self.port}",
             f"--bolt-path={self.root / 'influxd.bolt'}",
             f"--engine-path={self.root / 'engine'}",
             f"--sqlite-path={self.root / 'influxd.sqlite'}"],
            stdout=log, stderr=log, env=env, cwd=self.root)
        wait_until(self.healthy, 60, f"influxd /health on {self.url} (log: {self.root})")

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.root / "influxd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"influxd exited with {self.proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, like a crash or a pulled plug."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self._reap()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._reap()

    def _reap(self) -> None:
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token or self.operator_token:
            req.add_header("Authorization", f"Token {token or self.operator_token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def onboard(self) -> None:
        setup = self.api("POST", "/api/v2/setup", {
            "username": "linemon", "password": "linemon-test-pw", "org": ORG,
            "bucket": "onboarding", "retentionPeriodSeconds": 3600})
        self.operator_token = setup["auth"]["token"]
        self.org_id = setup["org"]["id"]
        # Scoped token: read/write the org's buckets (creating them included), read the org.
        perms = [{"action": a, "resource": {"type": "buckets", "orgID": self.org_id}}
                 for a in ("read", "write")]
        perms.append({"action": "read", "resource": {"type": "orgs", "id": self.org_id}})
        auth = self.api("POST", "/api/v2/authorizations", {
            "orgID": self.org_id, "description": "linemon tests", "permissions": perms})
        self.token = auth["token"]

    def write_lines(self, bucket: str, lines: list[str]) -> None:
        req = urllib.request.Request(
            f"{self.url}/api/v2/write?orgID={self.org_id}&bucket={bucket}&precision=ns",
            method="POST", data="\n".join(lines).encode())
        req.add_header("Authorization", f"Token {self.operator_token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204

    def query_csv(self, flux: str, token: str | None = None) -> list[dict[str, str]]:
        """Raw Flux over HTTP (independent of the code under test), CSV rows as dicts."""
        req = urllib.request.Request(
            f"{self.url}/api/v2/query?orgID={self.org_id}", method="POST",
            data=json.dumps({"query": flux, "dialect": {"annotations": []}}).encode())
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Token {token or self.operator_token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode()
        rows: list[dict[str, str]] = []
        header: list[str] | None = None
        for cells in csv.reader(io.StringIO(text)):
            if not cells or cells == [""]:
                header = None  # a blank line separates result tables
                continue
            if header is None:
                header = cells
                continue
            rows.append(dict(zip(header, cells, strict=False)))
        return rows


