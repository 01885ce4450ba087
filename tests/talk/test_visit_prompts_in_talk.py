"""The whole daemon on a source build and the paced card: "porta aberta" during a talk call is heard at the gate
while the call's audio keeps flowing, through pjsua2's conference, and PortAudio never opens the card during the
call (daemon/speaker_route.py decides; docs/audio.md, "Prompts during a call").

The resident (baresip) sends a 1000 Hz tone and types the door code; the visitor speaks a 600 Hz tone into the
microphone while the prompt plays. Skipped without PulseAudio or baresip, or on a pjsua2 without a sound device.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from benchmarks.aec_speech import Signal, lag_of, read_wav
from daemon.config import Apartment
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from tests.scenario.conftest import Panel, run_panel, scenario_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import (
    NEEDS_PULSE_AND_BARESIP,
    RATE,
    RESIDENT_HZ,
    SLICE_S,
    VISITOR_HZ,
    playback_streams_of_this_process,
    skip_without_sound_device,
    tone_slices,
)

pytestmark = NEEDS_PULSE_AND_BARESIP


def _without(x: Signal, rate: int, hz: float, width: float = 60.0) -> Signal:
    """``x`` with the band around ``hz`` removed (the resident's tone, to find the prompt under it)."""
    spectrum = np.fft.rfft(x)
    spectrum[np.abs(np.fft.rfftfreq(len(x), 1 / rate) - hz) <= width] = 0
    return np.fft.irfft(spectrum, len(x))


def _resampled(pcm: bytes, rate: int) -> Signal:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    n = len(x) * RATE // rate
    return np.interp(np.arange(n) * rate / RATE, np.arange(len(x)), x)


def _rate(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getframerate()


async def test_door_open_prompt_is_heard_during_the_call_with_its_audio_flowing(
    tmp_path: Path, prompt_cache: Path
) -> None:
    resident = write_tones_wav(tmp_path / "resident.wav", [(RESIDENT_HZ, 60.0)])
    visitor = write_tones_wav(tmp_path / "visitor.wav", [(VISITOR_HZ, 3.0)], rate=RATE)
    with (
        paced_card_as_default(tmp_path / "card") as card,
        Baresip(tmp_path, user="101", audio_source=resident) as phone,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        # The hang-up after the opening comes well after "porta aberta" (~1.5 s): the prompt plays inside the call.
        config = scenario_config(tmp_path, prompt_cache, [apt], hangup_after_open_seconds=4)
        with card.record_speaker(tmp_path / "speaker.wav") as speaker:
            async with run_panel(config) as panel:
                if panel.app.sip.has_sound_device:
                    streams = await _open_the_door_while_talking(panel, card, phone, visitor)
        skip_without_sound_device(panel)
    assert streams == 1, "the card was opened twice by this process while the prompt played"
    door_open = panel.app.prompts.speaker_pcm("door_open")
    _assert_heard_with_the_call(read_wav(speaker), door_open.data, door_open.rate, phone)


async def _open_the_door_while_talking(panel: Panel, card: PacedCard, phone: Baresip, visitor: Path) -> int:
    """The resident types the code during the call; returns this process's streams on the card during the prompt."""
    app = panel.app
    route = app.speaker_route
    await panel.press()
    await phone.wait_event("CALL_ESTABLISHED", 10)
    await panel.until(lambda: app.sip.talk_holds_sound_device, 5, "the call's audio on the card")
    portaudio_prompts, portaudio_buffers = route.portaudio_prompts, len(app.panel.speaker.latencies)
    await anyio.sleep(0.5)  # the resident alone first
    with card.talk(visitor):
        phone.command("sndcode", "1")
        await panel.until(lambda: "DOOR_OPEN" in panel.names(), 5, "the door opened")
        await anyio.sleep(0.5)  # inside "porta aberta"
        streams = await anyio.to_thread.run_sync(playback_streams_of_this_process, card)
        await phone.wait_event("CALL_CLOSED", 10)  # the panel hangs up after hangup_after_open
    # Nothing went to PortAudio during the call: no prompt, and no buffer written by it.
    assert route.portaudio_prompts == portaudio_prompts
    assert len(app.panel.speaker.latencies) == portaudio_buffers
    await panel.visit_done()
    assert route.conference_prompts == 1  # "porta aberta"
    assert app.sip.fault_counters == (0, 0)
    return streams


async def test_call_ending_warning_is_heard_at_the_gate_during_the_call(tmp_path: Path, prompt_cache: Path) -> None:
    """The warning goes to the resident in the call and to the visitor through the card, the call going on."""
    resident = write_tones_wav(tmp_path / "resident.wav", [(RESIDENT_HZ, 60.0)])
    visitor = write_tones_wav(tmp_path / "visitor.wav", [(VISITOR_HZ, 3.0)], rate=RATE)
    with (
        paced_card_as_default(tmp_path / "card") as card,
        Baresip(tmp_path, user="101", audio_source=resident) as phone,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        # The warning 2 s into the call, the call cut 5 s later: the warning (~2 s) plays inside the call.
        config = scenario_config(tmp_path, prompt_cache, [apt], max_call_seconds=7, call_warning_seconds=5)
        with card.record_speaker(tmp_path / "speaker.wav") as speaker:
            async with run_panel(config) as panel:
                if panel.app.sip.has_sound_device:
                    await _talk_until_the_warning(panel, card, phone, visitor)
        skip_without_sound_device(panel)
    warning = panel.app.prompts.speaker_pcm("call_ending")
    _assert_heard_with_the_call(read_wav(speaker), warning.data, warning.rate, phone)


async def _talk_until_the_warning(panel: Panel, card: PacedCard, phone: Baresip, visitor: Path) -> None:
    app = panel.app
    await panel.press()
    await phone.wait_event("CALL_ESTABLISHED", 10)
    await panel.until(lambda: app.sip.talk_holds_sound_device, 5, "the call's audio on the card")
    portaudio_prompts = app.speaker_route.portaudio_prompts
    with card.talk(visitor):
        await panel.until(lambda: _played("call_ending", panel.events()), 10, "the warning played")
    # It played whole inside the call, and not through PortAudio (the farewell after the call does).
    assert app.speaker_route.portaudio_prompts == portaudio_prompts
    assert app.speaker_route.conference_prompts == 1
    assert "CALL_CLOSED" not in [e.get("type") for e in phone.all_events]
    await phone.wait_event("CALL_CLOSED", 10)  # cut at max_call_seconds
    await panel.visit_done()


def _played(prompt: str, events: list[dict[str, Any]]) -> bool:
    return any(e["event"] == "PLAYBACK_END" and e["text"] == prompt for e in events)


def _assert_heard_with_the_call(heard: Signal, pcm: bytes, rate: int, phone: Baresip) -> None:
    """The prompt ``pcm`` reached the gate whole, with the resident's tone under it; the visitor reached the phone."""
    # "porta aberta" is in what the gate heard, whole: aligned by cross-correlation with the resident's tone
    # taken out of both, it correlates strongly with the prompt as prepared.
    prompt = _without(_resampled(pcm, rate), RATE, RESIDENT_HZ)
    clean = _without(heard, RATE, RESIDENT_HZ)
    lag = lag_of(prompt, clean)
    assert 0 <= lag <= len(clean) - len(prompt), f"the prompt is not inside the recording (lag {lag})"
    window = clean[lag : lag + len(prompt)]
    correlation = float(np.dot(window, prompt) / (np.linalg.norm(window) * np.linalg.norm(prompt) + 1e-12))
    assert correlation > 0.5, f"the prompt at the gate correlates {correlation:.2f} with the prepared one"
    # While it played, the resident's voice went on reaching the gate.
    during = tone_slices(heard[lag : lag + len(prompt)], RATE, RESIDENT_HZ, share=0.05)
    assert during.mean() >= 0.8, f"the resident was heard in only {during.mean():.0%} of the prompt"
    # The visitor, speaking over the prompt, reached the resident.
    [received] = phone.received_recordings()
    said = tone_slices(read_wav(received), _rate(received), VISITOR_HZ)
    assert said.sum() * SLICE_S >= 1.0, f"only {said.sum() * SLICE_S:.1f} s of the visitor reached the resident"
