"""Fixtures for the app-level storage cases: the scenario suite's prompt cache and ALSA capture."""

from __future__ import annotations

from tests.scenario.conftest import prompt_cache, speaker

__all__ = ["prompt_cache", "speaker"]
