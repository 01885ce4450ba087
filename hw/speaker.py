"""The panel's speaker: spoken prompts and tones through pyaudio -> PortAudio -> ALSA.

Every pyaudio call runs in anyio's worker threads behind a dedicated ``CapacityLimiter(1)``: the loop
never blocks on ALSA, one prompt plays at a time, and the worker thread is reused (no thread per
prompt). The PyAudio instance is created once (PortAudio enumerates devices at that moment) and thrown
away after any error, so the next prompt re-enumerates: a USB speaker plugged back in, or a device that
was busy, is retried then. The stream is opened per prompt because the SIP engine shares the device.
"""

from __future__ import annotations

import array
import io
import logging
import math
import sys
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pyaudio

from hw.errors import AudioError
from hw.settings import AudioConfig

__all__ = ["PcmFormat", "PlayResult", "Speaker", "read_wav", "scale_volume", "tone"]

log = logging.getLogger(__name__)

# How long a cancelled play() waits for its worker to notice the stop flag (one buffer is ~5-50 ms).
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved little-endian PCM: ``sample_width`` bytes per sample (1 = unsigned 8-bit)."""

    rate: int
    channels: int = 1
    sample_width: int = 2

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width


@dataclass(frozen=True)
class PlayResult:
    """What happened to one prompt. ``error`` is set (and logged) instead of raising: a missing speaker
    must never stop a visitor's call."""

    frames: int  # frames handed to ALSA
    stopped: bool = False
    first_buffer_latency: float | None = None  # seconds from play() to the first buffer in ALSA
    error: AudioError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_wav(source: str | Path | bytes) -> tuple[bytes, PcmFormat]:
    """PCM frames and format of a WAV file (path or bytes). Raises :class:`AudioError` if unreadable."""
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as wav:
            fmt = PcmFormat(wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            return wav.readframes(wav.getnframes()), fmt
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"speaker: cannot read WAV {str(source)[:80]!r}: {exc}") from exc


def scale_volume(pcm: bytes, sample_width: int, volume: float) -> bytes:
    """``pcm`` scaled by ``volume`` and clipped (not wrapped) at full scale."""
    if volume == 1.0:
        return pcm
    if sample_width == 1:
        return bytes(min(255, max(0, round((b - 128) * volume) + 128)) for b in pcm)
    code = {2: "h", 4: "i"}[sample_width]
    samples = array.array(code, pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    top = (1 << (8 * sample_width - 1)) - 1
    out = array.array(code, (min(top, max(-top - 1, round(s * volume))) for s in samples))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def tone(hz: float, seconds: float, rate: int = 16000, level: float = 0.3) -> tuple[bytes, PcmFormat]:
    """A sine tone as 16-bit mono PCM (the self-test's test tone)."""
    n = int(rate * seconds)
    amp = int(32767 * level)
    samples = array.array("h", (round(amp * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes(), PcmFormat(rate)


class Speaker:
    """The prompt speaker on ``config.output_device`` (a PortAudio device name, matched exactly then as a
    case-insensitive substring; ``"default"`` is ALSA's default PCM).

    Wiring: a USB sound card or the Pi's headphone jack into a small amplifier; nothing on the GPIO.

    ``last_first_buffer_latency`` and ``on_first_buffer`` expose the time from :meth:`play` being called
    to the first buffer written into ALSA: it is on the critical path from the doorbell press.
    """

    def __init__(self, config: AudioConfig, *, pyaudio_factory: Callable[[], Any] | None = None) -> None:
        self._config = config
        self._pyaudio_factory = pyaudio_factory
        self._pa: Any = None
        self._index: int | None = None  # the output device's PortAudio index, valid with this _pa
        self._pa_lock = threading.Lock()  # the PyAudio instance, between worker and close()
        self._limiter = anyio.CapacityLimiter(1)
        self._turn = anyio.Lock()  # held until the worker has really finished, even after a cancel
        self._stop: threading.Event | None = None
        self._closed = False
        self.last_first_buffer_latency: float | None = None
        self.latencies: deque[float] = deque(maxlen=1000)
        self.on_first_buffer: Callable[[float], None] | None = None  # called in the worker thread
        self.on_buffer: Callable[[int], None] | None = None  # after each buffer, with its index (tests)

    @property
    def turn(self) -> anyio.Lock:
        """Held while a prompt plays; the talk pump (hw.talk) holds it for a whole call, so the two never
        write to the output device at the same time."""
        return self._turn

    @property
    def playing(self) -> bool:
        return self._stop is not None

    async def start(self) -> None:
        """Open PortAudio and find the device now, so the first prompt does not pay for it. Logs, never
        raises: the next prompt retries."""
        try:
            await anyio.to_thread.run_sync(self._device_index, limiter=self._limiter)
        except AudioError as exc:
            log.error("%s", exc)

    async def play_wav(self, source: str | Path | bytes) -> PlayResult:
        called = time.monotonic()
        try:
            pcm, fmt = read_wav(source)
        except AudioError as exc:
            log.error("%s", exc)
            return PlayResult(0, error=exc)
        return await self.play(pcm, fmt, _called=called)

    async def play(self, pcm: bytes, fmt: PcmFormat, *, _called: float | None = None) -> PlayResult:
        """Play ``pcm`` to the end, or until :meth:`stop` or cancellation (within one buffer)."""
        called = time.monotonic() if _called is None else _called
        if fmt.sample_width not in (1, 2, 4):
            exc = AudioError(f"speaker: {8 * fmt.sample_width}-bit PCM is not supported; use 8, 16 or 32-bit")
            log.error("%s", exc)
            return PlayResult(0, error=exc)
        async with self._turn:
            stop = self._stop = threading.Event()
            done = threading.Event()
            try:
                return await anyio.to_thread.run_sync(
                    self._play_blocking, pcm, fmt, stop, done, called, limiter=self._limiter, abandon_on_cancel=True
                )
            except anyio.get_cancelled_exc_class():
                stop.set()
                # Keep our turn until the worker has closed the stream, so the next prompt cannot overlap.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(done.wait, STOP_GRACE_S)
                raise
            finally:
                self._stop = None

    def stop(self) -> None:
        """Stop the prompt playing now (within one buffer). Safe from any thread; no-op when idle."""
        stop = self._stop
        if stop is not None:
            stop.set()

    def close(self) -> None:
        self._closed = True
        self.stop()
        with self._pa_lock:
            self._terminate()

    # -- worker-thread side ----------------------------------------------------------------------------

    def shared_pyaudio(self) -> Any:
        """The speaker's PyAudio instance, created if need be, for the talk pump (hw.talk): one instance per
        process, because PortAudio's initialize/terminate are not thread-safe and a second instance would be
        made and terminated in another worker thread, racing this one's. Call it from a worker thread while
        holding :attr:`turn`. Raises :class:`AudioError` if the output device is missing."""
        self._device_index()
        return self._pa

    def _play_blocking(
        self, pcm: bytes, fmt: PcmFormat, stop: threading.Event, done: threading.Event, called: float
    ) -> PlayResult:
        frames = 0
        latency: float | None = None
        try:
            if self._closed:
                raise AudioError("speaker: closed")
            index = self._device_index()
            stream = self._open(fmt, index)
            try:
                chunk = self._config.frames_per_buffer * fmt.frame_bytes
                for n, offset in enumerate(range(0, len(pcm), chunk)):
                    if stop.is_set():
                        break
                    data = scale_volume(pcm[offset : offset + chunk], fmt.sample_width, self._config.volume)
                    stream.write(data, exception_on_underflow=False)
                    frames += len(data) // fmt.frame_bytes
                    if latency is None:
                        latency = time.monotonic() - called
                        self._record(latency)
                    if self.on_buffer is not None:
                        self.on_buffer(n)
                if not stop.is_set():
                    stream.stop_stream()  # drains: the prompt's tail is heard
            finally:
                stream.close()  # on a stop this discards what is still buffered (Pa_CloseStream aborts)
            return PlayResult(frames, stopped=stop.is_set(), first_buffer_latency=latency)
        except OSError as exc:
            error = (
                exc
                if isinstance(exc, AudioError)
                else AudioError(f"speaker: {self._config.output_device!r}: playback failed: {exc}")
            )
            log.error("%s (will reopen the device for the next prompt)", error)
            with self._pa_lock:
                self._terminate()
            return PlayResult(frames, stopped=stop.is_set(), first_buffer_latency=latency, error=error)
        finally:
            done.set()

    def _record(self, latency: float) -> None:
        self.last_first_buffer_latency = latency
        self.latencies.append(latency)
        if self.on_first_buffer is not None:
            self.on_first_buffer(latency)

    def _device_index(self) -> int:
        with self._pa_lock:
            if self._pa is None:
                self._pa = self._new_pyaudio()
            elif self._index is not None:
                return self._index
            pa = self._pa
        self._index = self._find_output(pa)
        return self._index

    def _find_output(self, pa: Any) -> int:
        wanted = self._config.output_device
        outputs: list[tuple[int, str]] = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxOutputChannels", 0)) > 0:
                outputs.append((i, str(info["name"])))
        for i, name in outputs:
            if name == wanted:
                return i
        for i, name in outputs:
            if wanted.lower() in name.lower():
                return i
        if wanted == "default" and outputs:
            return int(pa.get_default_output_device_info()["index"])
        with self._pa_lock:
            self._terminate()  # re-enumerate next time: the device may be plugged in later
        names = ", ".join(repr(n) for _, n in outputs) or "none"
        raise AudioError(f"speaker: output device {wanted!r} not found; PortAudio output devices: {names}")

    def _new_pyaudio(self) -> Any:
        try:
            if self._pyaudio_factory is not None:
                return self._pyaudio_factory()
            # PortAudio reads ALSA's configuration here (Pa_Initialize), not when pyaudio is imported.
            return pyaudio.PyAudio()
        except OSError as exc:
            raise AudioError(f"speaker: PortAudio failed to initialize: {exc}") from exc

    def _open(self, fmt: PcmFormat, index: int) -> Any:
        pa = self._pa
        try:
            return pa.open(
                format=pa.get_format_from_width(fmt.sample_width, unsigned=fmt.sample_width == 1),
                channels=fmt.channels,
                rate=fmt.rate,
                output=True,
                output_device_index=index,
                frames_per_buffer=self._config.frames_per_buffer,
            )
        except (OSError, ValueError) as exc:
            raise AudioError(
                f"speaker: cannot open {self._config.output_device!r} for {fmt.rate} Hz "
                f"{fmt.channels} ch {8 * fmt.sample_width}-bit (missing or busy?): {exc}"
            ) from exc

    def _terminate(self) -> None:
        """Drop the PyAudio instance (caller holds ``_pa_lock``)."""
        pa, self._pa, self._index = self._pa, None, None
        if pa is not None:
            try:
                pa.terminate()
            except OSError as exc:
                log.debug("speaker: PortAudio terminate failed: %s", exc)
