"""The whole daemon in-process on real parts: MockFactory pins, pyaudio into ALSA's file plugin, real
pjsua2 calling real baresip phones on 127.0.0.1. Every step waits with a timeout."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from daemon.app import IntercomApp, running
from daemon.config import Apartment, Config, PathsConfig, default_config_text, parse_config
from tests.support.alsa import AlsaCapture, capture_alsa
from tests.support.peers import free_port


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by every scenario: synthesis happens once per session, as it does once per boot on a panel.
    return tmp_path_factory.mktemp("prompt-cache")


@pytest.fixture
def speaker(tmp_path: Path) -> Iterator[AlsaCapture]:
    with capture_alsa(tmp_path / "alsa", keep_all=True) as capture:
        yield capture


def scenario_config(tmp_path: Path, cache: Path, apartments: list[Apartment], **timing: Any) -> Config:
    base = parse_config(default_config_text())
    return replace(
        base,
        sip=replace(
            base.sip,
            bind_address="127.0.0.1",
            port=free_port(),
            rtp_port=22000 + (free_port() % 40) * 200,
            inbound_allow=(),
        ),
        apartments=tuple(apartments),
        buttons=base.buttons[:1],
        timing=replace(base.timing, **{"ring_timeout_seconds": 4, "hangup_after_open_seconds": 0.5, **timing}),
        paths=PathsConfig(state_dir=str(tmp_path / "state"), cache_dir=str(cache), runtime_dir=str(tmp_path / "run")),
    )


class Panel:
    """Drives and reads the simulated panel's pins."""

    def __init__(self, app: IntercomApp, factory: MockFactory) -> None:
        self.app = app
        self.factory = factory

    async def press(self, button_pin: int = 17, hold: float = 0.1) -> None:
        pin = self.factory.pin(button_pin)
        pin.drive_low()  # pull-up input: pressed is low
        await anyio.sleep(hold)
        pin.drive_high()

    @property
    def relay_energized(self) -> bool:
        return bool(self.factory.pin(self.app.config.relay.pin).state)

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.01)

    async def visit_done(self, count: int = 1, timeout: float = 20) -> None:
        with anyio.fail_after(timeout):
            await self.app.visits.wait_completed(count)
        await self.app.visit_log.flush()

    def events(self) -> list[dict[str, Any]]:
        path = Path(self.app.config.paths.state_dir) / "events.jsonl"
        if not path.exists():  # written behind the first events (daemon.visitlog.WRITE_BEHIND_S): none yet
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events()]


@asynccontextmanager
async def run_panel(config: Config) -> AsyncIterator[Panel]:
    factory = MockFactory()
    try:
        async with running(config, pin_factory=factory) as app:
            yield Panel(app, factory)
    finally:
        factory.reset()
