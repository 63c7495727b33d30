"""Fixtures for the notification tests: real receivers on free ports, started and stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.notify.receivers import HttpReceiver, SmtpReceiver
from tests.notify.tls import self_signed, server_context

SMTP_USER, SMTP_PASSWORD = "linemon", "mail-password-for-tests"


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    server = HttpReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path / "tls")


@pytest.fixture
def smtp(certs: tuple[Path, Path]) -> Iterator[SmtpReceiver]:
    """STARTTLS required, AUTH required: what a plant's mail relay usually asks for."""
    box = SmtpReceiver("starttls", server_context(*certs), {SMTP_USER: SMTP_PASSWORD})
    box.start()
    yield box
    box.stop()
