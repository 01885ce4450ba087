"""The talk path on a source build: pjmedia's sound device on the paced card, with its echo canceller.

A baresip phone is the resident and speaks (espeak-ng); the panel's speaker and microphone are the paced card's
null sinks, with an echo path from the speaker back into the microphone, and the visitor speaks into the
microphone after the resident. The test hears both directions, checks that the panel's own speaker is cancelled
out of what the resident gets back (a loose bound: the benchmark, benchmarks/aec_speech.py, measures it), and
that the card has exactly one playback stream from this process while the call talks.

Skipped without PulseAudio, espeak-ng or sox, or on a pjsua2 without a sound device (the wheel); CI runs these on
the source build (PYTHONPATH=<build>/python).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from benchmarks.aec_speech import Signal, analyse_run, level_db, read_wav, speak
from daemon.bridge import LoopBridge
from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card_as_default
from daemon.sip import CallEnded, SipEngine
from hw.settings import AudioConfig
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip
from tests.talk._support import dial_onto_the_card, playback_streams_of_this_process

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pulseaudio", "espeak-ng", "sox", "baresip")),
        reason="needs Debian's pulseaudio, espeak-ng, sox and baresip",
    ),
]

RESIDENT = "Oi, quem é? Pode entrar, vou abrir o portão agora. Empurre com força, ele está emperrado."
VISITOR = "Boa tarde, é a entrega do mercado para o apartamento cento e um."


@pytest.fixture
def card(tmp_path: Path) -> Iterator[PacedCard]:
    """The paced card as this process's ALSA default: pjmedia lists devices at libInit, so set before it."""
    with paced_card_as_default(tmp_path / "card") as running:
        yield running


def _resident_voice(tmp: Path, silence_s: float) -> Path:
    """baresip's audio source: 8 kHz speech then silence (baresip hangs up when its source ends)."""
    speech = speak(RESIDENT, tmp / "resident16k.wav")
    out = tmp / "resident8k.wav"
    subprocess.run(["sox", str(speech), "-r", "8000", str(out), "pad", "0", str(silence_s)], check=True)
    return out


def _to_16k(x: Signal, rate: int) -> Signal:
    if rate == 16000:
        return x
    n = len(x) * 16000 // rate
    return np.interp(np.arange(n) * rate / 16000, np.arange(len(x)), x)


def _rate(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getframerate()


async def test_talk_both_ways_with_the_echo_cancelled(card: PacedCard, tmp_path: Path, bridge: LoopBridge) -> None:
    card.add_echo_path(EchoPath(delay_ms=40, gain_db=-6.0))
    visitor = speak(VISITOR, tmp_path / "visitor.wav")
    resident_voice = _resident_voice(tmp_path, silence_s=30.0)
    resident_s = len(read_wav(tmp_path / "resident16k.wav")) / 16000
    with Baresip(tmp_path, audio_source=resident_voice) as phone:
        async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
            if not engine.has_sound_device:
                pytest.skip(f"this pjsua2 has no sound device ({engine.info}): the talk path needs a source build")
            log = EventLog(engine)
            mic = tmp_path / "mic.wav"
            with card.record_microphone(mic), card.record_speaker(tmp_path / "speaker.wav") as speaker:
                call = await dial_onto_the_card(engine, phone, log)
                await anyio.sleep(resident_s + 0.5)  # the resident talks; the visitor listens (real time)
                streams = playback_streams_of_this_process(card)
                with card.talk(visitor) as talker:
                    await anyio.to_thread.run_sync(lambda: talker.wait(timeout=30))
                await anyio.sleep(0.5)  # the visitor's last words cross the jitter buffer
                await engine.hangup(call)
                await log.wait(CallEnded, call)
            await phone.wait_event("CALL_CLOSED", 5)
    [received] = phone.received_recordings()
    heard_by_resident = _to_16k(read_wav(received), _rate(received))
    heard_at_gate = read_wav(speaker)
    # The resident's voice reaches the gate: as loud as the speech itself, give or take the codec and levels.
    assert level_db(heard_at_gate) > level_db(read_wav(tmp_path / "resident16k.wav")) - 20
    assert streams == 1, f"{streams} playback streams from this process: the card is opened more than once"
    figures = analyse_run(read_wav(mic), heard_by_resident, read_wav(tmp_path / "resident16k.wav"), read_wav(visitor))
    # The visitor reaches the resident: -1.3/-1.4 dB in 5 runs with Speex's AGC off (the default), once -3.3 dB in CI
    # (a misaligned run: loop delay 3 s); with the AGC on (stock pjmedia) -8.5 dB here, -8 to -10 dB in the benchmark.
    # So -6 dB: it tells the AGC's level change apart without failing on one run's alignment (issue 14's 3 dB target
    # is measured by benchmarks/aec_speech.py, not by a test).
    assert figures["visitor_alone_db"] is not None and figures["visitor_alone_db"] > -6, figures
    # The panel's own speaker is cancelled out of what it sends. A loose bound, "the canceller is active": with it
    # off this measured 0.3 dB; with Speex 7.8-46 dB over 11 runs, most near 8-15 dB (a real call cancels far less
    # than the isolated loop of benchmarks/aec_speech: docs/audio.md), once 4.4 dB in 9 runs on a loaded machine,
    # and 3.9-29.8 dB in 5 runs on the clocked card with the AGC off: so 3 dB, ten times off's figure.
    assert figures["erle_median_after_2s_db"] is not None and figures["erle_median_after_2s_db"] >= 3, figures
