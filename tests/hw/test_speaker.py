"""The speaker through the real stack: pyaudio -> PortAudio -> ALSA, into a ``type file`` PCM.

Comparisons are byte-exact on the PCM payload (the file plugin records exactly the frames PortAudio
wrote, in the stream's own format), except the volume test, which is sample-exact against the expected
scaled samples.
"""

from __future__ import annotations

import array
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import anyio
import pyaudio
import pytest

from hw.settings import AudioConfig
from hw.speaker import PcmFormat, Speaker, read_wav, scale_volume, tone
from tests.hw.helpers import wait_until
from tests.support.alsa import AlsaCapture


def noise(nbytes: int, seed: int = 1) -> bytes:
    # Deterministic, non-repeating bytes: a misplaced or dropped buffer cannot go unnoticed.
    x = seed
    out = bytearray()
    for _ in range(nbytes):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x >> 16 & 0xFF)
    return bytes(out)


@pytest.mark.parametrize(
    ("rate", "channels", "width"), [(8000, 1, 2), (22050, 1, 2), (44100, 2, 2), (48000, 2, 4), (16000, 1, 1)]
)
async def test_prompt_reaches_alsa_byte_exact(alsa_capture: AlsaCapture, rate: int, channels: int, width: int) -> None:
    fmt = PcmFormat(rate, channels, width)
    pcm = noise(fmt.frame_bytes * 3001)  # not a whole number of buffers
    speaker = Speaker(AudioConfig())
    try:
        result = await speaker.play(pcm, fmt)
    finally:
        speaker.close()
    assert result.ok and not result.stopped and result.frames == 3001
    captured = alsa_capture.last()
    assert (captured.rate, captured.channels, captured.sample_width) == (rate, channels, width)
    assert captured.frames == pcm


async def test_wav_prompt_from_espeak_ng(alsa_capture: AlsaCapture, tmp_path: Path) -> None:
    wav = tmp_path / "prompt.wav"
    await anyio.run_process(["espeak-ng", "-v", "pt-br", "-w", str(wav), "Aguarde."])
    pcm, fmt = read_wav(wav)
    speaker = Speaker(AudioConfig())
    try:
        result = await speaker.play_wav(wav)
    finally:
        speaker.close()
    assert result.ok
    captured = alsa_capture.last()
    assert captured.rate == fmt.rate == 22050 and captured.frames == pcm


async def test_volume_is_scaled_sample_exact(alsa_capture: AlsaCapture) -> None:
    pcm, fmt = tone(440, 0.1, level=0.9)
    speaker = Speaker(AudioConfig(volume=0.5))
    try:
        assert (await speaker.play(pcm, fmt)).ok
    finally:
        speaker.close()
    got = array.array("h", alsa_capture.last().frames)
    want = array.array("h", pcm)
    assert list(got) == [round(s * 0.5) for s in want]


def test_volume_clips_instead_of_wrapping() -> None:
    loud = array.array("h", [30000, -30000, 100]).tobytes()
    assert list(array.array("h", scale_volume(loud, 2, 2.0))) == [32767, -32768, 200]
    assert scale_volume(bytes([0, 128, 255]), 1, 2.0) == bytes([0, 128, 255])


async def test_stop_mid_prompt_within_one_buffer(alsa_capture: AlsaCapture) -> None:
    config = AudioConfig(frames_per_buffer=256)
    fmt = PcmFormat(16000)
    pcm = noise(2 * 16000 * 2)  # 2 s
    speaker = Speaker(config)
    speaker.on_buffer = lambda n: speaker.stop() if n == 9 else None  # stop after the 10th buffer
    try:
        result = await speaker.play(pcm, fmt)
    finally:
        speaker.close()
    assert result.stopped and result.frames == 10 * 256
    frames = alsa_capture.last().frames
    assert pcm.startswith(frames) and len(frames) <= 10 * 256 * 2


async def test_cancelling_play_stops_the_worker_before_the_next_prompt(alsa_capture: AlsaCapture) -> None:
    speaker = Speaker(AudioConfig(frames_per_buffer=256))
    seen: list[int] = []
    # The null PCM never blocks, so slow each buffer down to keep the prompt "playing" while we cancel.

    def slow(n: int) -> None:
        seen.append(n)
        time.sleep(0.005)

    speaker.on_buffer = slow
    try:
        with anyio.move_on_after(0.05):
            await speaker.play(noise(16000 * 2 * 5), PcmFormat(16000))
        assert not speaker.playing
        stopped_at = len(seen)
        await anyio.sleep(0.05)
        assert len(seen) == stopped_at  # the worker really stopped
        second = await speaker.play(b"\x01\x00" * 300, PcmFormat(8000))
        assert second.ok and alsa_capture.last().frames == b"\x01\x00" * 300
    finally:
        speaker.close()


async def test_missing_device_is_logged_and_retried_on_the_next_prompt(
    alsa_capture: AlsaCapture, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = Speaker(AudioConfig(output_device="no-such-card"))
    try:
        result = await speaker.play(b"\x00\x00" * 100, PcmFormat(8000))
        assert result.error is not None and "no-such-card" in str(result.error) and "not found" in str(result.error)
        assert "no-such-card" in caplog.text
        # The "device appears": the next prompt enumerates again and plays.
        speaker._config = AudioConfig(output_device="default")
        assert (await speaker.play(b"\x02\x00" * 100, PcmFormat(8000))).ok
        assert alsa_capture.last().frames == b"\x02\x00" * 100
    finally:
        speaker.close()


class _FailingAfter:
    """A real PyAudio whose first stream fails after ``writes`` writes, as PortAudio does when a USB sound
    card is pulled mid-prompt (OSError -9999 "Unanticipated host error"). No machine here can pull one."""

    def __init__(self, writes: int) -> None:
        import pyaudio

        self._pa = pyaudio.PyAudio()
        self._writes = writes

    def __getattr__(self, name: str) -> object:
        return getattr(self._pa, name)

    def open(self, **kwargs: object) -> object:
        stream = self._pa.open(**kwargs)
        if self._writes < 0:
            return stream
        budget, self._writes = self._writes, -1  # only the first stream fails
        real_write = stream.write

        def write(data: bytes, exception_on_underflow: bool = False) -> None:
            nonlocal budget
            if budget == 0:
                raise OSError(-9999, "Unanticipated host error")
            budget -= 1
            real_write(data, exception_on_underflow=exception_on_underflow)

        stream.write = write
        return stream


async def test_device_failing_mid_prompt_is_logged_and_reopened_for_the_next(
    alsa_capture: AlsaCapture, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[_FailingAfter] = []

    def factory() -> _FailingAfter:  # the first PyAudio's stream fails; the one made to recover works
        made.append(_FailingAfter(writes=3 if not made else -1))
        return made[-1]

    speaker = Speaker(AudioConfig(output_device="default", frames_per_buffer=256), pyaudio_factory=factory)
    try:
        pcm = noise(2 * 256 * 10)  # ten buffers of 256 16-bit frames
        result = await speaker.play(pcm, PcmFormat(8000))
        assert result.error is not None and "playback failed" in str(result.error)
        assert result.frames == 3 * 256  # what was written before the failure, and no more
        assert "will reopen the device" in caplog.text
        again = await speaker.play(pcm, PcmFormat(8000))
        assert len(made) == 2  # the failed PortAudio instance was dropped and a new one made
        assert again.ok and alsa_capture.last().frames == pcm
    finally:
        speaker.close()


async def test_unreadable_wav_is_an_error_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    speaker = Speaker(AudioConfig())
    try:
        result = await speaker.play_wav(bad)
    finally:
        speaker.close()
    assert result.error is not None and "bad.wav" in str(result.error)


async def test_play_to_first_buffer_latency(alsa_capture: AlsaCapture) -> None:
    """>= 100 plays of a short prompt; median and p99 of play() -> first buffer written into ALSA."""
    speaker = Speaker(AudioConfig())
    hooked: list[float] = []
    speaker.on_first_buffer = hooked.append
    pcm, fmt = tone(660, 0.05, rate=22050)
    try:
        await speaker.start()  # PortAudio initialised once, as the daemon does at start-up
        for _ in range(120):
            assert (await speaker.play(pcm, fmt)).ok
    finally:
        speaker.close()
    lat = sorted(speaker.latencies)
    assert len(lat) == 120 and hooked == list(speaker.latencies)
    median, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
    report = {
        "plays": len(lat),
        "median_ms": round(median * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3),
    }
    print(f"\nplay-to-first-buffer-in-ALSA latency: {json.dumps(report)}")
    if out := os.environ.get("INTERCOM_LATENCY_REPORT"):
        await anyio.Path(out).write_text(json.dumps(report), encoding="utf-8")
    assert median < 0.02 and p99 < 0.1, report


def test_alsa_capture_keep_all_appends_every_stream(tmp_path: Path) -> None:
    # In a subprocess: the capture helper must work for a process that sets it up before PyAudio exists.
    code = (
        "import anyio, sys\n"
        "from pathlib import Path\n"
        "from tests.support.alsa import capture_alsa\n"
        "from hw.speaker import Speaker, PcmFormat\n"
        "from hw.settings import AudioConfig\n"
        "async def main():\n"
        "    with capture_alsa(Path(sys.argv[1]), keep_all=True) as cap:\n"
        "        s = Speaker(AudioConfig())\n"
        "        for b in (b'\\x01\\x00', b'\\x02\\x00'):\n"
        "            assert (await s.play(b * 50, PcmFormat(8000))).ok\n"
        "        s.close()\n"
        "        assert cap.all_frames() == b'\\x01\\x00' * 50 + b'\\x02\\x00' * 50, cap.all_frames()\n"
        "        assert cap.last().frames == b'\\x02\\x00' * 50\n"
        "anyio.run(main)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "alsa")], check=True, cwd=Path(__file__).parents[2], timeout=60
    )


def test_wav_helper_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    pcm, fmt = tone(440, 0.01)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fmt.rate)
        w.writeframes(pcm)
    assert read_wav(path) == (pcm, fmt)


async def test_a_prompt_cancelled_before_its_worker_began_lets_go_at_once(alsa_capture: AlsaCapture) -> None:
    # The speaker's worker is busy initializing PortAudio (the probe: ~0.1 s, seconds on a loaded Pi) when a prompt
    # starts and is cancelled, as the runner does when the resident answers. Waiting for a worker that never began
    # held the speaker for the whole 2 s grace, and the resident's first words in talk mode were lost.
    entered, gate = threading.Event(), threading.Event()

    def slow_portaudio() -> object:
        entered.set()
        gate.wait(5)
        return pyaudio.PyAudio()

    speaker = Speaker(AudioConfig(), pyaudio_factory=slow_portaudio)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(speaker.start)
            await wait_until(entered.is_set, 2)
            started = time.monotonic()
            with anyio.move_on_after(0.05):
                await speaker.play(*tone(440.0, 0.1))
            cancelled_in = time.monotonic() - started
            gate.set()
        assert cancelled_in < 0.5, cancelled_in
        assert (await speaker.play(b"\x03\x00" * 100, PcmFormat(8000))).ok  # and the speaker still works
        assert alsa_capture.last().frames == b"\x03\x00" * 100
    finally:
        gate.set()
        speaker.close()


class _HungAfterOneWrite:
    """A real PyAudio whose streams stop taking audio after the first write, as a wedged USB card does."""

    def __init__(self) -> None:
        self._pa = pyaudio.PyAudio()
        self.unstick = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._pa, name)

    def open(self, **kwargs: object) -> object:
        stream = self._pa.open(**kwargs)
        real_write, writes = stream.write, [0]

        def write(data: bytes, exception_on_underflow: bool = False) -> None:
            writes[0] += 1
            if writes[0] > 1:
                self.unstick.wait(30)  # blocks like Pa_WriteStream on a hung device
            real_write(data, exception_on_underflow=exception_on_underflow)

        stream.write = write
        return stream


async def test_a_hung_device_ends_the_prompt_with_an_error_and_is_left_alone(alsa_capture: AlsaCapture) -> None:
    fake = _HungAfterOneWrite()
    speaker = Speaker(AudioConfig(frames_per_buffer=256), pyaudio_factory=lambda: fake, play_slack=0.3)
    try:
        pcm = b"\x01\x00" * 256 * 4  # four buffers at 8 kHz: 0.128 s, so the bound is 0.428 s
        with anyio.fail_after(3):
            result = await speaker.play(pcm, PcmFormat(8000))
        assert result.error is not None and "hung" in str(result.error)
        assert not speaker.health().ok and "hung" in speaker.health().detail
        # While the worker is stuck inside PortAudio nothing else touches it: the next prompt fails at once.
        with anyio.fail_after(0.5):
            again = await speaker.play(pcm, PcmFormat(8000))
        assert again.error is not None and "stuck" in str(again.error)
        fake.unstick.set()
        await wait_until(lambda: speaker.hung() is None, 3)
        assert (await speaker.play(pcm, PcmFormat(8000))).ok
    finally:
        fake.unstick.set()
        speaker.close()
