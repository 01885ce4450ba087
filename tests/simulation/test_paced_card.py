"""The paced virtual card: audio takes its real time, and the echo path couples speaker into microphone."""

from __future__ import annotations

import array
import math
import os
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from benchmarks.aec_speech import lag_of, read_wav
from daemon.simulation.paced_card import EchoPath, PacedCard, paced_card_as_default
from hw.settings import AudioConfig
from hw.speaker import Speaker, tone

pytestmark = pytest.mark.skipif(shutil.which("pulseaudio") is None, reason="needs Debian's pulseaudio")


@pytest.fixture
def card(tmp_path: Path) -> Iterator[PacedCard]:
    with paced_card_as_default(tmp_path / "card") as running:
        yield running


def _samples(path: Path) -> array.array[int]:
    with wave.open(str(path), "rb") as w:
        return array.array("h", w.readframes(w.getnframes()))


def _rms_db(samples: array.array[int]) -> float:
    if not samples:
        return -120.0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return 20 * math.log10(max(rms, 1e-3) / 32768)


async def test_a_prompt_takes_its_real_duration(card: PacedCard) -> None:
    """On the file PCM a 1.5 s prompt 'plays' in milliseconds; on the paced card it takes 1.5 s or more."""
    speaker = Speaker(AudioConfig(frames_per_buffer=256))
    pcm, fmt = tone(440, 1.5)
    try:
        with card.record_speaker(card.directory / "heard.wav") as heard:
            started = time.monotonic()
            with anyio.fail_after(15):
                result = await speaker.play(pcm, fmt)
            elapsed = time.monotonic() - started
    finally:
        speaker.close()
    assert result.ok, result.error
    assert elapsed >= 1.4, f"a 1.5 s prompt took {elapsed:.3f} s: the card is not paced"
    loud = [i for i, s in enumerate(_samples(heard)) if abs(s) > 3000]
    assert loud, "nothing reached the speaker's monitor"
    # Heard at its real length, within 0.2 s: through PortAudio -> ALSA's pulse plugin about 0.1 s of a 1.5 s
    # prompt is lost today (measured 1.376-1.40 s heard), and the drain returns ~1.8 s after the last write. Both
    # are open findings for the talk-audio work (issue 14), which decides who owns the card.
    assert 1.3 <= (loud[-1] - loud[0]) / 16000 <= 1.6


async def test_echo_path_couples_speaker_into_microphone(card: PacedCard, tmp_path: Path) -> None:
    """What the panel plays comes back at its microphone, attenuated by the echo path's loss."""
    module = card.add_echo_path(EchoPath(delay_ms=40, gain_db=-12.0))
    speaker = Speaker(AudioConfig(frames_per_buffer=256))
    pcm, fmt = tone(440, 1.0, level=0.3)
    try:
        with card.record_microphone(tmp_path / "mic.wav") as mic, anyio.fail_after(15):
            result = await speaker.play(pcm, fmt)
    finally:
        speaker.close()
    card.remove_module(module)
    assert result.ok, result.error
    samples = _samples(mic)
    played = _rms_db(array.array("h", pcm))
    window = 1600  # the loudest 100 ms of what the microphone picked up
    heard = max(_rms_db(samples[i : i + window]) for i in range(0, max(1, len(samples) - window), window))
    assert -18 <= heard - played <= -6, f"echo at {heard - played:.1f} dB, path set to -12 dB"


def test_echo_path_delay_stays_fixed_while_clients_come_and_go(card: PacedCard, tmp_path: Path) -> None:
    """A room's echo does not move during a call: the speaker -> microphone delay holds to within 1 ms over 20 s
    while low-latency clients like pjmedia's sound device and the visitor join the two sinks. (With
    module-loopback's default rate adaptation it crept by 12 ms over these 20 s: an echo moving under the
    canceller.)"""
    noise, silence = tmp_path / "noise.wav", tmp_path / "silence.wav"
    seconds = 20
    sox = ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16"]
    subprocess.run([*sox, str(noise), "synth", str(seconds), "whitenoise", "vol", "0.3"], check=True)
    subprocess.run([*sox, str(silence), "trim", "0", str(seconds)], check=True)
    card.add_echo_path(EchoPath(delay_ms=40, gain_db=-6.0))
    env = {**os.environ, "PULSE_SERVER": card.server}
    clients = [
        ["paplay", "--device=spk", "--latency-msec=10", str(silence)],  # the panel's playback, as pjmedia's
        ["paplay", "--device=mic", "--latency-msec=5", str(silence)],  # the visitor
        ["parec", "--device=mic.monitor", "--latency-msec=10"],  # the panel's capture
    ]
    with card.record_speaker(tmp_path / "spk.wav") as spk, card.record_microphone(tmp_path / "mic.wav") as mic:
        others = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL) for argv in clients]
        try:
            subprocess.run(["paplay", "--device=spk", str(noise)], env=env, check=True, timeout=seconds + 15)
        finally:
            for proc in others:
                proc.kill()
                proc.wait(timeout=5)
    played, echoed = read_wav(spk), read_wav(mic)
    second = 16000
    # The two recorders start at different moments, so the absolute lag is theirs plus the path's: what must
    # not change is the lag of each second of the speaker's noise within the microphone's recording.
    lags_ms = [
        lag_of(played[i * second : (i + 1) * second], echoed[i * second : (i + 2) * second]) / 16
        for i in range(1, min(len(played), len(echoed)) // second - 1)
    ]
    assert len(lags_ms) >= seconds - 4, f"only {len(lags_ms)} s of noise recorded"
    assert max(lags_ms) - min(lags_ms) <= 1.0, f"the echo delay moved: {lags_ms} ms"


def test_both_sinks_run_at_a_fixed_10_ms_period(card: PacedCard, tmp_path: Path) -> None:
    """Like a real card's interrupt, whoever is connected: a null sink left alone renders in blocks of its
    clients' lowest latency (2 s with none asking), and pjmedia's callbacks then come in bursts that knock
    Speex's echo alignment by a frame (docs/audio.md)."""
    with card.record_microphone(tmp_path / "mic.wav"):  # a client asking for 50 ms on one of the two
        sinks = card.pactl("list", "sinks").split("Sink #")[1:]
    configured = [
        int(line.split("configured ")[1].split()[0]) for s in sinks for line in s.splitlines() if "configured" in line
    ]
    assert len(configured) == 2 and max(configured) <= 10_000, f"configured latencies {configured} usec"


def test_neither_sink_rewinds_what_it_has_rendered(card: PacedCard) -> None:
    """A real card's DMA never takes back what it played. A null sink rewinds whenever one of its clients ends
    an underrun (the period clock's silent players do, several times a second): it renders its last block again,
    and every client's stream position moves. Through ALSA's pulse plugin that made pjmedia's conference, which
    the card's playback clocks, run 270-335 ppm fast of the wall clock and its capture 80-300 ppm slow in
    2-3 minute calls (one +20 ms jitter-buffer step a minute, a ±30 ms capture step every 1-2 minutes, none of it
    the panel's); with ``norewinds`` it read -7.4 to +20.4 ppm in 3-10 minute calls (docs/audio.md, "The card's
    clock")."""
    modules = [line.split("\t") for line in card.pactl("list", "short", "modules").splitlines()]
    sinks = {fields[2] for fields in modules if fields[1] == "module-null-sink"}
    assert len(sinks) == 2 and all("norewinds=1" in arguments.split() for arguments in sinks), sinks
