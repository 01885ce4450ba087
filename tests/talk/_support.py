"""What the talk tests share: the tones each side speaks, what they read off the paced card (tones in a recording,
this process's streams on the card), and the marks and skips of a test needing PulseAudio, baresip and a card."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

from benchmarks.aec_speech import Signal
from daemon.simulation.paced_card import PacedCard

if TYPE_CHECKING:
    from daemon.sip import SipEngine
    from daemon.sip.types import CallHandle
    from tests.scenario.conftest import Panel
    from tests.sip.conftest import EventLog
    from tests.support.peers import Baresip

__all__ = [
    "NEEDS_PULSE_AND_BARESIP",
    "RATE",
    "RESIDENT_HZ",
    "SLICE_S",
    "VISITOR_HZ",
    "dial_onto_the_card",
    "playback_streams_of_this_process",
    "skip_without_sound_device",
    "tone_slices",
]

SLICE_S = 0.05
RATE = 16000  # the paced card's
RESIDENT_HZ, VISITOR_HZ = 1000, 600  # the resident's tone (baresip's source), the visitor's (into the microphone)

NEEDS_PULSE_AND_BARESIP = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pulseaudio", "baresip")), reason="needs Debian's pulseaudio, baresip"
    ),
]


def skip_without_sound_device(panel: Panel) -> None:
    """Call outside the app's task group: a skip raised inside it would come out as an exception group."""
    if not panel.app.sip.has_sound_device:
        pytest.skip(f"this pjsua2 has no sound device ({panel.app.sip.info}): talk needs one")


async def dial_onto_the_card(engine: SipEngine, phone: Baresip, log: EventLog) -> CallHandle:
    """Dial the phone and connect the answered call to the card (skips on a pjsua2 without a sound device)."""
    from daemon.sip import MediaActive

    if not engine.has_sound_device:
        pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
    call = await engine.dial(phone.uri, ring_timeout=10)
    await log.wait(MediaActive, call)
    await engine.connect_sound_device(call)
    return call


def playback_streams_of_this_process(card: PacedCard) -> int:
    """Playback streams this process has open on the card (PulseAudio's sink inputs naming our pid)."""
    blocks = card.pactl("list", "sink-inputs").split("Sink Input #")[1:]
    return sum(f'application.process.id = "{os.getpid()}"' in block for block in blocks)


def tone_slices(x: Signal, rate: int, hz: float, *, share: float = 0.1, floor_db: float = -50.0) -> np.ndarray:
    """Per 50 ms slice of ``x`` (floats, full scale 1.0): does a ``hz`` tone hold at least ``share`` of the
    slice's energy, the slice being louder than ``floor_db`` dBFS? Several tones mixed each keep their share."""
    n = int(rate * SLICE_S)
    count = len(x) // n
    if count == 0:
        return np.zeros(0, dtype=bool)
    slices = x[: count * n].reshape(count, n) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(slices, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = np.abs(freqs - hz) <= 40.0
    total = spectrum.sum(axis=1) + 1e-20
    loud = 10 * np.log10(np.mean(x[: count * n].reshape(count, n) ** 2, axis=1) + 1e-20) > floor_db
    return np.asarray((spectrum[:, band].sum(axis=1) / total >= share) & loud)
