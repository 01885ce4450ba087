"""Live call audio as PCM frames, for builds of pjsua2 without a sound device (the x86_64 wheel).

The SIP engine's talk port (``_pj_calls.PjTalkPort``) runs on pjmedia's clock thread and must never block
or call pjsua2, so all it does is move frames in and out of two bounded queues; the panel's audio pump
(``hw.talk``) moves them between the queues and pyaudio in one worker thread. Neither side waits on the
other: a full queue drops its oldest frame (counted), an empty one yields silence (counted).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["AudioBridge", "FrameQueue"]


class FrameQueue:
    """A bounded, thread-safe FIFO of PCM frames that never blocks its producer: on overflow the oldest
    frame goes (old audio is worth less than new audio in a conversation) and :attr:`dropped` counts it."""

    def __init__(self, max_frames: int) -> None:
        self._frames: deque[bytes] = deque()
        self._max = max_frames
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self.dropped = 0
        self.passed = 0
        self.peak = 0  # most frames ever waiting: x 20 ms, the worst latency this queue added

    def put(self, frame: bytes) -> None:
        with self._ready:  # held for microseconds only, by either side
            if len(self._frames) >= self._max:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.peak = max(self.peak, len(self._frames))
            self._ready.notify()

    def get_nowait(self) -> bytes | None:
        with self._ready:
            if not self._frames:
                return None
            self.passed += 1
            return self._frames.popleft()

    def get(self, timeout: float) -> bytes | None:
        """The next frame, or None after ``timeout`` seconds or once closed and empty."""
        with self._ready:
            if not self._frames and not self._closed:
                self._ready.wait(timeout)
            if not self._frames:
                return None
            self.passed += 1
            return self._frames.popleft()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(eq=False)
class AudioBridge:
    """One call's audio: ``received`` (call -> panel speaker) and ``mic`` (panel microphone -> call),
    16-bit signed little-endian mono PCM at ``rate``, ``samples_per_frame`` samples a frame."""

    rate: int = 16000
    samples_per_frame: int = 320  # 20 ms: pjmedia's frame
    queue_frames: int = 10  # 200 ms at most in each direction: beyond that, latency beats completeness
    received: FrameQueue = field(init=False)
    mic: FrameQueue = field(init=False)
    silence_sent: int = 0  # frames the call asked for while the microphone queue was empty
    callback_errors: int = 0
    _closed: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.received = FrameQueue(self.queue_frames)
        self.mic = FrameQueue(self.queue_frames)

    @property
    def frame_bytes(self) -> int:
        return 2 * self.samples_per_frame

    @property
    def frame_seconds(self) -> float:
        return self.samples_per_frame / self.rate

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def summary(self) -> str:
        r, m = self.received, self.mic
        return (
            f"in {r.passed} frames ({r.dropped} dropped, peak queue {r.peak}), out {m.passed} "
            f"({m.dropped} dropped, peak queue {m.peak}, {self.silence_sent} silent), "
            f"{self.callback_errors} errors"
        )

    def close(self) -> None:
        """The call's audio is gone (call ended, engine stopped): the pump ends within one frame."""
        self._closed.set()
        self.received.close()
        self.mic.close()
