"""The ``alsa_capture`` fixture over :mod:`daemon.simulation.alsa` (ALSA's default PCM into a file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.simulation.alsa import AlsaCapture, CapturedStream, capture_alsa, write_capture_config

__all__ = ["AlsaCapture", "CapturedStream", "alsa_capture", "capture_alsa", "write_capture_config"]


@pytest.fixture
def alsa_capture(tmp_path: Path) -> Iterator[AlsaCapture]:
    """ALSA's default PCM captured into ``tmp_path/alsa``; create PyAudio (the Speaker) inside the test."""
    with capture_alsa(tmp_path / "alsa") as capture:
        yield capture
