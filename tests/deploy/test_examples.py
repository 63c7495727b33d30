"""Every plant config shipped for deployment passes `linemon check-config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from linemon.cli import check_config
from tests.deploy.tools import DEPLOY, REPO

CONFIGS = [*sorted(DEPLOY.glob("examples/*.yaml")), DEPLOY / "kubernetes" / "plant.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_check_config_accepts_it(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(path) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{path}: valid" in out


def test_the_examples_are_the_promised_ones() -> None:
    names = {p.stem for p in DEPLOY.glob("examples/*.yaml")}
    assert {"siemens-s7-1500-opcua", "kepware-kepserverex-opcua", "sparkplug-b",
            "mqtt-json", "compose-demo"} <= names
    for path in DEPLOY.glob("examples/*.yaml"):
        assert f"linemon check-config {path.relative_to(REPO)}" in path.read_text(), path
