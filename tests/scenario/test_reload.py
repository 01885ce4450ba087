"""Reload (SIGHUP, `intercomctl reload`) against the real app: live settings reach the next visit, the rest
are named as needing a restart, a bad file is refused whole."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from daemon.app import running
from daemon.config import load_config
from daemon.prompts import PromptSet
from tests.app.conftest import render_config
from tests.support.alsa import AlsaCapture
from tests.support.peers import free_port

pytestmark = pytest.mark.anyio


class ConfigFile:
    def __init__(self, tmp_path: Path, cache: Path) -> None:
        self.path = tmp_path / "intercom.toml"
        self.tmp_path, self.cache = tmp_path, cache
        self.port, self.rtp_port = free_port(), 22000 + (free_port() % 40) * 200

    def write(self, waiting: str, pulse_seconds: float = 1.0) -> None:
        self.path.write_text(
            render_config(
                port=self.port,
                rtp_port=self.rtp_port,
                state=self.tmp_path / "state",
                cache=self.cache,
                run=self.tmp_path / "run",
                residents=[f"sip:nobody@127.0.0.1:{free_port()}"],  # nothing answers: the visit ends by itself
                waiting_text=waiting,
                pulse_seconds=pulse_seconds,
                ring_timeout=1,
            )
        )


def waiting_pcm(prompts: PromptSet) -> bytes:
    return prompts.speaker_pcm("waiting").data


async def test_new_prompts_are_played_on_the_next_visit_and_a_new_pulse_needs_a_restart(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    file = ConfigFile(tmp_path, prompt_cache)
    file.write("Please wait: the text before the reload.")
    config, _ = load_config(file.path)
    factory = MockFactory()
    try:
        async with running(config, config_path=file.path, pin_factory=factory) as app:
            before = app.prompts
            file.write("Please wait: the text after the reload.", pulse_seconds=2.0)
            result = await app.reload()
            after = app.prompts
            assert result.reloaded, result
            assert "prompts.text" in result.applied and result.restart_needed == ("relay.pulse_seconds",)
            assert app.config.relay.pulse_seconds == 1.0  # named, not silently half-applied
            assert waiting_pcm(after) != waiting_pcm(before)
            pin = factory.pin(17)
            pin.drive_low()
            await anyio.sleep(0.1)  # held past min_press_ms
            pin.drive_high()
            with anyio.fail_after(20):
                await app.wait_visits(1)
    finally:
        factory.reset()
    # What the visitor heard first is the NEW waiting prompt (before the fix: the old set was still played).
    assert speaker.all_frames()[:8000] == waiting_pcm(after)[:8000]


async def test_a_bad_file_is_refused_whole_and_an_unchanged_one_says_so(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    file = ConfigFile(tmp_path, prompt_cache)
    file.write("Please wait.")
    config, _ = load_config(file.path)
    factory = MockFactory()
    try:
        async with running(config, config_path=file.path, pin_factory=factory) as app:
            unchanged = await app.reload()
            file.path.write_text(file.path.read_text().replace("pulse_seconds = 1.0", "pulse_seconds = -1"))
            refused = await app.reload()
            in_force = app.config
    finally:
        factory.reset()
    assert unchanged.reloaded and unchanged.unchanged
    assert not refused.reloaded and "pulse_seconds" in refused.error
    assert in_force == config
