"""Fixtures: a real Mosquitto per test (free port, its own config and directory) and the fake app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.mqtt.broker import Mosquitto
from tests.mqtt.fakes import FakeApp


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture
async def app() -> AsyncIterator[FakeApp]:
    async with FakeApp() as fake:
        yield fake
