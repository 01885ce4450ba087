from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from tests.hw.helpers import Recorder
from tests.support.alsa import alsa_capture

__all__ = ["alsa_capture"]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.close()
    f.reset()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
