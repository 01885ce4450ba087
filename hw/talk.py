"""Talk mode on a panel whose pjsua2 has no sound device: the call's audio to the speaker, the microphone
to the call, through pyaudio.

The SIP engine hands over a *link* (``daemon.sip.AudioBridge``): two bounded frame queues filled and drained
by pjmedia's clock thread. :class:`TalkPump` runs one blocking loop in ONE anyio worker thread for the
whole call (never a thread per frame): take a frame from the call, write it to the output stream, read one
frame from the input stream into the call. The call's 20 ms frames pace the loop (ALSA's file/null test
device does not block); on real hardware the blocking write and read pace it as well.

The output device is the speaker's: the pump holds :attr:`Speaker.turn` for the whole call, so a prompt
can never play into the same stream at the same time (the runner stops the prompt first anyway). PortAudio is the
speaker's too (:meth:`Speaker.shared_pyaudio`): one instance per process, made only after the speaker's probe showed
that initializing it does not abort the process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread
import pyaudio

from hw._portaudio import find_device
from hw._worker import WorkerJob
from hw.pcm import scale_volume
from hw.settings import AudioConfig
from hw.speaker import Speaker

__all__ = ["TalkLink", "TalkPump", "TalkStats"]

log = logging.getLogger(__name__)


class _FrameSource(Protocol):
    def get(self, timeout: float) -> bytes | None: ...


class _FrameSink(Protocol):
    def put(self, frame: bytes) -> None: ...


class TalkLink(Protocol):
    """One call's audio as 16-bit mono PCM frames (``daemon.sip.AudioBridge`` is one)."""

    rate: int
    samples_per_frame: int

    @property
    def received(self) -> _FrameSource: ...
    @property
    def mic(self) -> _FrameSink: ...
    @property
    def closed(self) -> bool: ...


@dataclass(frozen=True)
class TalkStats:
    frames_out: int  # frames written to the speaker (call audio; silence while the call sent none)
    frames_in: int  # microphone frames handed to the call
    output_ok: bool
    input_ok: bool
    first_frame_latency: float | None = None  # run() called -> first call frame written to ALSA


class TalkPump:
    """Duplex pyaudio pump for one call at a time: ``await pump.run(link)`` until the link closes or the
    caller is cancelled (the worker notices within one frame)."""

    def __init__(self, config: AudioConfig, *, speaker: Speaker) -> None:
        self._config = config
        self._speaker = speaker
        self._turn = speaker.turn
        # The speaker's own PyAudio: never a second PortAudio instance beside it.
        self._shared_pyaudio = speaker.shared_pyaudio
        self._limiter = anyio.CapacityLimiter(1)
        self.last: TalkStats | None = None

    async def run(self, link: TalkLink) -> TalkStats:
        called = time.monotonic()
        async with self._turn:
            if (hung := self._speaker.hung()) is not None:
                log.error("talk: %s; the call goes on without the panel's audio", hung)
                stats = TalkStats(0, 0, False, False)
                self.last = stats
                return stats
            job = WorkerJob()
            with self._speaker.talking(job):
                try:
                    stats = await anyio.to_thread.run_sync(
                        self._pump, link, job, called, limiter=self._limiter, abandon_on_cancel=True
                    )
                except anyio.get_cancelled_exc_class():
                    # Keep the speaker's turn until the streams are closed, so a farewell prompt cannot overlap.
                    if not await job.cancel():
                        self._speaker.note_stuck(job)
                    raise
        self.last = stats
        return stats

    # -- worker-thread side ------------------------------------------------------------------------------

    def _pump(self, link: TalkLink, job: WorkerJob, called: float) -> TalkStats:
        frames_out = frames_in = 0
        stop = job.stop
        latency: float | None = None
        out = inp = None
        try:
            if not job.begin():
                return TalkStats(0, 0, False, False)
            pa = self._shared_pyaudio()
            out = self._open(pa, link, output=True)
            inp = self._open(pa, link, output=False)
            output_ok, input_ok = out is not None, inp is not None
            silence = bytes(2 * link.samples_per_frame)
            wait = 2 * link.samples_per_frame / link.rate  # then write silence: keeps ALSA fed, stop noticed
            while not stop.is_set() and not link.closed:
                frame = link.received.get(wait)
                if out is not None:
                    try:
                        out.write(scale_volume(frame or silence, 2, self._config.volume), exception_on_underflow=False)
                    except OSError as exc:
                        detail = f"talk: speaker {self._config.output_device!r} failed mid-call: {exc}"
                        log.error("%s; going on without it", detail)
                        self._speaker.note_failure(detail)
                        _close(out)
                        out = None
                    frames_out += 1
                    if latency is None and frame is not None:
                        latency = time.monotonic() - called
                if inp is not None:
                    try:
                        link.mic.put(inp.read(link.samples_per_frame, exception_on_overflow=False))
                        frames_in += 1
                    except OSError as exc:
                        log.error(
                            "talk: microphone %r failed mid-call, going on without it: %s",
                            self._config.input_device,
                            exc,
                        )
                        _close(inp)
                        inp = None
            return TalkStats(frames_out, frames_in, output_ok, input_ok, latency)
        except OSError as exc:
            log.error("talk: PortAudio failed: %s", exc)
            self._speaker.note_failure(f"talk: PortAudio failed: {exc}")
            return TalkStats(frames_out, frames_in, False, False, latency)
        finally:
            _close(out)
            _close(inp)
            job.end()

    def _open(self, pa: Any, link: TalkLink, *, output: bool) -> Any:
        """An open stream, or None (logged) when the device is missing or busy: the other way still works."""
        wanted = self._config.output_device if output else self._config.input_device
        what = "speaker" if output else "microphone"
        try:
            index = find_device(pa, wanted, "output" if output else "input")
            return pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=link.rate,
                output=output,
                input=not output,
                frames_per_buffer=link.samples_per_frame,
                **({"output_device_index": index} if output else {"input_device_index": index}),
            )
        except (OSError, ValueError) as exc:
            log.error("talk: %s %r unavailable, the call goes on without it: %s", what, wanted, exc)
            if output:
                self._speaker.note_failure(f"talk: speaker {wanted!r} unavailable: {exc}")
            return None


def _close(stream: Any) -> None:
    if stream is not None:
        try:
            stream.close()
        except OSError as exc:
            log.debug("talk: closing a stream failed: %s", exc)
