"""``[audio] talk_volume`` and ``mic_gain``: a talk call's two directions at the levels configured, on the paced
card through pjmedia's sound device (the conference connections between the call and the card).

Two calls, one at 1.0/1.0 and one at 0.25/0.25 (-12 dB): the resident's 1000 Hz tone at the gate's speaker and
the visitor's 600 Hz tone at the phone come out about 12 dB lower in the second. Echo cancellation is off (no
echo path here) so that nothing adaptive sits between the two measurements. Skipped without PulseAudio or
baresip, or on a pjsua2 without a sound device.
"""

from __future__ import annotations

import wave
from pathlib import Path

import anyio
import numpy as np
import pytest

from benchmarks.aec_speech import level_db, read_wav
from daemon.bridge import LoopBridge
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from daemon.sip import CallEnded, SipEngine
from hw.settings import AudioConfig
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import (
    NEEDS_PULSE_AND_BARESIP,
    RATE,
    RESIDENT_HZ,
    SLICE_S,
    VISITOR_HZ,
    dial_onto_the_card,
    tone_slices,
)

pytestmark = NEEDS_PULSE_AND_BARESIP

TALK_S = 5.0  # the visitor's paplay starts ~1.5 s after it is spawned (a PulseAudio client connecting, measured)


async def test_talk_volume_and_mic_gain_set_the_two_directions_levels(tmp_path: Path, bridge: LoopBridge) -> None:
    # Short names: baresip cuts its recording's path at ~126 characters (a longer one lost its file name).
    unchanged = await _levels(tmp_path, "a", bridge, AudioConfig(echo_cancellation=False))
    quieter = await _levels(
        tmp_path, "b", bridge, AudioConfig(echo_cancellation=False, talk_volume=0.25, mic_gain=0.25)
    )
    at_gate, at_phone = quieter[0] - unchanged[0], quieter[1] - unchanged[1]
    assert -16 <= at_gate <= -8, f"talk_volume 0.25 changed the resident's level at the gate by {at_gate:.1f} dB"
    assert -16 <= at_phone <= -8, f"mic_gain 0.25 changed the visitor's level at the phone by {at_phone:.1f} dB"


def _voices(tmp: Path) -> tuple[Path, Path]:
    """The resident's tone (baresip's source, 8 kHz) and the visitor's (into the card's microphone)."""
    tmp.mkdir()
    resident = write_tones_wav(tmp / "resident.wav", [(RESIDENT_HZ, 60.0)])
    return resident, write_tones_wav(tmp / "visitor.wav", [(VISITOR_HZ, 30.0)], rate=RATE)


async def _levels(base: Path, run: str, bridge: LoopBridge, audio: AudioConfig) -> tuple[float, float]:
    """(the resident's tone at the gate, the visitor's tone at the phone), dBFS over the slices holding them."""
    tmp = base / run
    resident, visitor = _voices(tmp)
    with paced_card_as_default(tmp / "card") as card, Baresip(base, user=run, audio_source=resident) as phone:
        async with SipEngine(make_config(), bridge, audio) as engine:
            if not engine.has_sound_device:
                pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
            speaker = await _call(engine, card, phone, visitor, tmp)
        await phone.wait_event("CALL_CLOSED", 5)
    [received] = phone.received_recordings()
    with wave.open(str(received), "rb") as w:
        phone_rate = w.getframerate()
    return _tone_level(read_wav(speaker), RATE, RESIDENT_HZ), _tone_level(read_wav(received), phone_rate, VISITOR_HZ)


async def _call(engine: SipEngine, card: PacedCard, phone: Baresip, visitor: Path, tmp: Path) -> Path:
    log = EventLog(engine)
    with card.record_speaker(tmp / "speaker.wav") as speaker:
        call = await dial_onto_the_card(engine, phone, log)
        with card.talk(visitor):
            await anyio.sleep(TALK_S)
        await engine.hangup(call)
        await log.wait(CallEnded, call)
    return speaker


def _tone_level(x: np.ndarray, rate: int, hz: float) -> float:
    n = int(rate * SLICE_S)
    holding = tone_slices(x, rate, hz)
    assert holding.sum() * SLICE_S >= 1.0, f"the {hz:g} Hz tone is in only {holding.sum() * SLICE_S:.1f} s"
    slices = x[: len(holding) * n].reshape(len(holding), n)[holding]
    return level_db(slices.ravel())
