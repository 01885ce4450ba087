"""The panel's speaker: spoken prompts and tones through pyaudio -> PortAudio -> ALSA.

Every pyaudio call runs in anyio's worker threads behind a dedicated ``CapacityLimiter(1)``: the loop
never blocks on ALSA, one prompt plays at a time, and the worker thread is reused (no thread per
prompt). The PyAudio instance is created once (PortAudio enumerates devices at that moment) and thrown
away after any error, so the next prompt re-enumerates: a USB speaker plugged back in, or a device that
was busy, is retried then. The stream is opened per prompt because the SIP engine shares the device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from hw import _portaudio
from hw._portaudio import PROBE_TIMEOUT_S
from hw._worker import STOP_GRACE_S, WorkerJob
from hw.errors import AudioError
from hw.pcm import PcmFormat, read_wav, scale_volume, tone
from hw.settings import AudioConfig

# PcmFormat and the PCM helpers live in hw.pcm; re-exported because callers have always found them here.
__all__ = ["STOP_GRACE_S", "PcmFormat", "PlayResult", "Speaker", "SpeakerHealth", "read_wav", "scale_volume", "tone"]

log = logging.getLogger(__name__)

# Beyond its own length, how long a prompt may take before the speaker counts as hung: the first prompt may
# include the PortAudio probe (up to PROBE_TIMEOUT_S) and opening the device.
PLAY_SLACK_S = PROBE_TIMEOUT_S + 5.0
# After a failed PortAudio probe, a prompt tries again at most this often: an installer who fixes asound.conf gets
# the speaker back without a restart, and a panel without one does not spawn a probe per prompt.
PROBE_RETRY_S = 60.0


@dataclass(frozen=True)
class SpeakerHealth:
    """What the last attempt to reach the speaker found: shown by the app's status and self-test."""

    ok: bool
    detail: str


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


class Speaker:
    """The prompt speaker on ``config.output_device`` (a PortAudio device name, matched exactly then as a
    case-insensitive substring; ``"default"`` is ALSA's default PCM).

    Wiring: a USB sound card or the Pi's headphone jack into a small amplifier; nothing on the GPIO.

    ``latencies`` and ``on_first_buffer`` expose the time from :meth:`play` being called
    to the first buffer written into ALSA: it is on the critical path from the doorbell press.

    The speaker is optional at run time: a missing card or a broken ALSA setup makes every prompt a logged error
    result and :meth:`health` says why, while the panel goes on calling. PortAudio is initialized in this process
    only after a child process survived doing so (:mod:`hw._portaudio`): with no ALSA PCM at all it aborts.

    ``pyaudio_factory`` replaces PortAudio (tests; no probe then). A prompt that has not finished ``play_slack``
    seconds after its own length counts as a hung device: it ends with an error result and PortAudio is left alone
    until the stuck worker returns.
    """

    def __init__(
        self,
        config: AudioConfig,
        *,
        pyaudio_factory: Callable[[], Any] | None = None,
        play_slack: float = PLAY_SLACK_S,
    ) -> None:
        self._config = config
        self._play_slack = play_slack
        self._pyaudio_factory = pyaudio_factory
        self._pa: Any = None
        self._index: int | None = None  # the output device's PortAudio index, valid with this _pa
        self._pa_lock = threading.Lock()  # the PyAudio instance, between worker and close()
        self._limiter = anyio.CapacityLimiter(1)
        self._turn = anyio.Lock()  # held until the worker has really finished, even after a cancel
        self._job: WorkerJob | None = None  # the prompt playing
        self._stuck: WorkerJob | None = None  # a job whose worker never let go of PortAudio (a hung device)
        self._closed = False
        self._health = SpeakerHealth(False, "not checked yet")
        self._probe_failure: tuple[float, str] | None = None  # (monotonic time, why) of the last failed probe
        _portaudio.quiet_jack_environment()
        self.latencies: deque[float] = deque(maxlen=1000)
        self.on_first_buffer: Callable[[float], None] | None = None  # called in the worker thread
        self.on_buffer: Callable[[int], None] | None = None  # after each buffer, with its index (tests)

    @property
    def turn(self) -> anyio.Lock:
        """Held while a prompt plays (until its worker has closed the stream): the speaker route asks it."""
        return self._turn

    @property
    def playing(self) -> bool:
        return self._job is not None

    def hung(self) -> AudioError | None:
        """Why PortAudio must not be touched now: a worker is still stuck inside it (a device that stopped taking
        audio). None when it may be used."""
        stuck = self._stuck
        if stuck is None or stuck.finished:
            self._stuck = None
            return None
        return AudioError("speaker: a previous audio job is still stuck in PortAudio (device hung?); not using it")

    def note_stuck(self, job: WorkerJob) -> None:
        if not job.finished:
            self._stuck = job
            self._health = SpeakerHealth(False, "audio device hung: a write or read did not return")

    def health(self) -> SpeakerHealth:
        """The speaker's state as of its last use (:meth:`start`, a prompt)."""
        return self._health

    async def start(self) -> None:
        """Probe PortAudio, open it and find the device now, so the first prompt does not pay for it and the log
        says at start whether the panel has a speaker. Never raises: the next prompt retries."""
        try:
            await anyio.to_thread.run_sync(self._device_index, limiter=self._limiter)
        except AudioError as exc:
            log.error("speaker unavailable, the panel goes on calling without it: %s", exc)
        else:
            log.info("speaker: %s", self._health.detail)

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
            if (hung := self.hung()) is not None:
                return PlayResult(0, error=hung)
            job = self._job = WorkerJob()
            # A device that stops taking audio (a hung USB card) blocks the write for ever: bound the prompt.
            limit = len(pcm) / (fmt.rate * fmt.frame_bytes) + self._play_slack
            try:
                with anyio.move_on_after(limit):
                    return await anyio.to_thread.run_sync(
                        self._play_blocking, pcm, fmt, job, called, limiter=self._limiter, abandon_on_cancel=True
                    )
                if not await job.cancel():
                    self.note_stuck(job)
                error = AudioError(f"speaker: {self._config.output_device!r} took no audio for {limit:.0f} s (hung?)")
                log.error("%s", error)
                self._health = SpeakerHealth(False, str(error))
                return PlayResult(0, error=error)
            except anyio.get_cancelled_exc_class():
                # Keep our turn until the worker has closed the stream, so the next prompt cannot overlap.
                if not await job.cancel():
                    self.note_stuck(job)
                raise
            finally:
                self._job = None

    def stop(self) -> None:
        """Stop the prompt playing now (within one buffer). Safe from any thread; no-op when idle."""
        job = self._job
        if job is not None:
            job.stop.set()

    def close(self) -> None:
        """Stop, wait (bounded) for a prompt's worker to close its stream, then terminate PortAudio. Terminating
        under a stream another thread still writes to can crash the process, so if the worker does not finish in
        time PortAudio is left to the process's exit instead."""
        self._closed = True
        self.stop()
        stuck = self._stuck
        if stuck is not None and not stuck.finished:
            log.error("speaker: audio still stuck in PortAudio; not terminated")
            return
        job = self._job
        if job is not None:
            job.stop.set()
            if not job.finished and not job.done.wait(STOP_GRACE_S):
                log.error("speaker: audio still in PortAudio after %.0f s; not terminated", STOP_GRACE_S)
                return
        # start() may still be probing or initializing PortAudio (the probe alone may take PROBE_TIMEOUT_S).
        if not self._pa_lock.acquire(timeout=STOP_GRACE_S):
            log.error("speaker: PortAudio still starting after %.0f s; not terminated", STOP_GRACE_S)
            return
        try:
            self._terminate()
        finally:
            self._pa_lock.release()

    # -- worker-thread side ----------------------------------------------------------------------------

    def _play_blocking(self, pcm: bytes, fmt: PcmFormat, job: WorkerJob, called: float) -> PlayResult:
        frames = 0
        latency: float | None = None
        stop = job.stop
        try:
            if not job.begin():
                return PlayResult(0, stopped=True)
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
            if not self._health.ok:
                self._mark_ok(self._pa, index)  # a device that failed before works again
            return PlayResult(frames, stopped=stop.is_set(), first_buffer_latency=latency)
        except OSError as exc:
            error = (
                exc
                if isinstance(exc, AudioError)
                else AudioError(f"speaker: {self._config.output_device!r}: playback failed: {exc}")
            )
            log.error("%s (will reopen the device for the next prompt)", error)
            self._health = SpeakerHealth(False, str(error))
            with self._pa_lock:
                self._terminate()
            return PlayResult(frames, stopped=stop.is_set(), first_buffer_latency=latency, error=error)
        finally:
            job.end()

    def _record(self, latency: float) -> None:
        self.latencies.append(latency)
        if self.on_first_buffer is not None:
            self.on_first_buffer(latency)

    def _device_index(self) -> int:
        """The output device's index, initializing PortAudio first if need be. Updates :meth:`health`."""
        try:
            with self._pa_lock:
                pa = self._portaudio()
                if self._index is not None:
                    return self._index
            self._index = self._find_output(pa)
        except AudioError as exc:
            self._health = SpeakerHealth(False, str(exc))
            raise
        self._mark_ok(pa, self._index)
        return self._index

    def _portaudio(self) -> Any:
        """The PyAudio instance, made if need be (``_pa_lock`` held)."""
        if self._pa is None:
            try:
                self._pa = self._new_pyaudio()
            except AudioError as exc:
                self._health = SpeakerHealth(False, str(exc))
                raise
        return self._pa

    def _mark_ok(self, pa: Any, index: int) -> None:
        name = pa.get_device_info_by_index(index)["name"]
        self._health = SpeakerHealth(True, f"{self._config.output_device!r} is PortAudio device {name!r}")

    def _find_output(self, pa: Any) -> int:
        try:
            return _portaudio.find_device(pa, self._config.output_device, "output")
        except AudioError as exc:
            with self._pa_lock:
                self._terminate()  # re-enumerate next time: the device may be plugged in later
            raise AudioError(f"speaker: {exc}") from exc

    def _new_pyaudio(self) -> Any:
        """A new PortAudio instance, after a child process has shown that initializing one does not
        abort (:func:`hw._portaudio.probe`). Probes before every new instance, since the ALSA setup may have
        changed since the last one; after a failure, at most once per :data:`PROBE_RETRY_S`."""
        if self._pyaudio_factory is not None:
            return self._pyaudio_factory()
        now = time.monotonic()
        if self._probe_failure is not None and now - self._probe_failure[0] < PROBE_RETRY_S:
            raise AudioError(f"speaker: {self._probe_failure[1]}")
        result = _portaudio.probe()
        if not result.ok:
            self._probe_failure = (now, result.detail)
            raise AudioError(f"speaker: {result.detail}")
        self._probe_failure = None
        try:
            return _portaudio.initialize()
        except AudioError as exc:
            raise AudioError(f"speaker: {exc}") from exc

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
