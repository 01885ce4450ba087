"""Talk mode on the wheel without a sound device: the call's audio reaches the panel's speaker and the
panel's microphone reaches the resident, through the Python talk port and hw.talk's pyaudio pump."""

from __future__ import annotations

import array
import math
import wave
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import Apartment
from daemon.simulation.phone import write_tones_wav
from tests.scenario.conftest import run_panel, scenario_config
from tests.support.alsa import AlsaCapture, capture_alsa
from tests.support.peers import Baresip

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

MIC_RATE = 16000  # the talk port's rate: the pump opens the microphone at it


def write_mic_raw(path: Path, hz: float, seconds: float) -> Path:
    samples = array.array(
        "h", (round(9000 * math.sin(2 * math.pi * hz * i / MIC_RATE)) for i in range(int(MIC_RATE * seconds)))
    )
    path.write_bytes(samples.tobytes())  # little-endian on every machine this runs on (x86, ARM)
    return path


async def test_talk_mode_carries_audio_both_ways(tmp_path: Path, prompt_cache: Path) -> None:
    mic = write_mic_raw(tmp_path / "mic.raw", 600, 30)
    resident_voice = write_tones_wav(tmp_path / "voice.wav", [(1000, 60.0)])
    with (
        capture_alsa(tmp_path / "alsa", keep_all=True, mic_raw=mic) as speaker,
        Baresip(tmp_path, user="101", audio_source=resident_voice) as phone,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        config = scenario_config(tmp_path, prompt_cache, [apt])
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(2.0)  # resident and visitor talk
            phone.hangup()
            await panel.visit_done()
            assert panel.app.sip.fault_counters == (0, 0)
    # What the visitor heard: ALSA got the waiting prompt, the talk stream, then the farewell prompt, each
    # appended raw to all.raw. Only the talk stream holds a pure 1000 Hz tone; read at the pump's rate.
    assert_heard_both_ways(speaker, phone, "resident")


async def test_talk_mode_door_open_prompt_is_heard_whole_after_the_call(tmp_path: Path, prompt_cache: Path) -> None:
    """In talk mode the call's audio holds the speaker, so "porta aberta" waits for the call to end; the
    visit's end (the hang-up after opening) must neither cut it nor stall on it."""
    mic = write_mic_raw(tmp_path / "mic.raw", 600, 30)
    with capture_alsa(tmp_path / "alsa", keep_all=True, mic_raw=mic) as speaker, Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        config = scenario_config(tmp_path, prompt_cache, [apt])
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.5)
            phone.command("sndcode", "1")
            await phone.wait_event("CALL_CLOSED", 10)  # the panel hangs up after hangup_after_open
            closed = anyio.current_time()
            await panel.visit_done()
            took = anyio.current_time() - closed
            door_open = panel.app.prompts.speaker_pcm("door_open").data
    assert door_open in speaker.all_frames()  # every sample of it, in order
    assert took < 2 * len(door_open) / (2 * 22050) + 2  # the prompt's own length and some slack, not 15 s


async def test_inbound_concierge_talks_both_ways(
    tmp_path: Path, prompt_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An allowlisted inbound call is bridged as soon as it is answered, before its media is up: the bridge
    must still join the call when the media comes (it once failed with 'no active audio media')."""
    mic = write_mic_raw(tmp_path / "mic.raw", 600, 30)
    concierge_voice = write_tones_wav(tmp_path / "voice.wav", [(1000, 60.0)])
    with (
        capture_alsa(tmp_path / "alsa", keep_all=True, mic_raw=mic) as speaker,
        Baresip(tmp_path, user="concierge", audio_source=concierge_voice) as concierge,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), codes=("1",))
        config = scenario_config(tmp_path, prompt_cache, [apt])
        config = replace(
            config,
            inbound_codes=("9",),
            sip=replace(config.sip, inbound_allow=("sip:concierge@127.0.0.1",), inbound_sources=("127.0.0.1",)),
        )
        async with run_panel(config) as panel:
            concierge.command("dial", f"sip:panel@127.0.0.1:{config.sip.port}")
            await concierge.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(2.0)  # concierge and visitor talk
            concierge.hangup()
            await panel.visit_done()
            assert panel.app.sip.fault_counters == (0, 0)
    assert not [r for r in caplog.records if "connect audio" in r.getMessage()]
    assert_heard_both_ways(speaker, concierge, "concierge")


def assert_heard_both_ways(speaker: AlsaCapture, phone: Baresip, who: str) -> None:
    """The phone's 1000 Hz tone reached the panel's speaker, and the panel microphone's 600 Hz the phone."""
    heard = tone_seconds(speaker.all_frames(), MIC_RATE, 1000)
    assert heard >= 1.0, f"only {heard:.1f} s of the {who}'s 1000 Hz tone reached the speaker"
    (recording,) = phone.received_recordings()
    with wave.open(str(recording), "rb") as w:
        rate, said_raw = w.getframerate(), w.readframes(w.getnframes())
    said = tone_seconds(said_raw, rate, 600)
    assert said >= 1.0, f"only {said:.1f} s of the panel microphone's 600 Hz tone reached the {who}"


def tone_seconds(raw: bytes, rate: int, hz: float, slice_s: float = 0.05) -> float:
    """Seconds of ``raw`` (16-bit mono) that are a pure ``hz`` tone: slices where the Goertzel power at ``hz``
    holds most of the slice's energy (a pure tone gives 0.5 of N * sum(x^2); speech far less)."""
    samples = array.array("h", raw)
    n = int(rate * slice_s)
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    pure = 0
    for i in range(0, len(samples) - n, n):
        s1 = s2 = energy = 0.0
        for x in samples[i : i + n]:
            s1, s2 = x + coeff * s1 - s2, s1
            energy += x * x
        if energy > n * 300.0**2 and (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * energy) > 0.3:
            pure += 1
    return pure * slice_s
