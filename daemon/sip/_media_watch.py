"""RTP inactivity watch: which calls have received no RTP for too long. Pure bookkeeping, no pjsua2.

The owner thread feeds it each watched call's received-packet count (read from pjsua2 there, the only
place allowed to) and hangs up the calls it names. Kept apart from the owner so the timing rules can be
unit-tested without pjsua2 and without waiting on real clocks.

Rules:
- A call is watched only while its audio is active (:meth:`start` .. :meth:`stop`). A call on hold, or
  one whose media was never negotiated, receives no RTP by design and must not be timed out.
- The silence clock starts at :meth:`start`, so a far end gets the full timeout as grace from media
  activation, before its first packet, as well as between packets.
- Any change of the counter counts as traffic, a decrease too: a re-INVITE can recreate the stream,
  and its counter then starts again from zero.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MediaWatch"]


@dataclass
class _Watched:
    last_count: int | None  # None until the first sample after (re)activation
    last_change: float  # monotonic time of activation or of the last counter change
    next_sample: float


class MediaWatch:
    """Per-call RX packet counters against a timeout in seconds (0 disables everything)."""

    def __init__(self, timeout: float, sample_interval: float = 1.0) -> None:
        self.timeout = timeout
        # Never coarser than a quarter of the timeout, so a short timeout is still detected near its value
        # (a hang-up lands at most one interval after timeout seconds of silence).
        self.interval = min(sample_interval, timeout / 4) if timeout > 0 else sample_interval
        self._calls: dict[int, _Watched] = {}

    @property
    def enabled(self) -> bool:
        return self.timeout > 0

    def start(self, generation: int, now: float) -> None:
        """Media became active (or was renegotiated): restart this call's silence clock and baseline."""
        if self.enabled:
            self._calls[generation] = _Watched(None, now, now + self.interval)

    def stop(self, generation: int) -> None:
        """Media no longer active (hold, call ended): stop watching this call."""
        self._calls.pop(generation, None)

    def due(self, now: float) -> list[int]:
        """The calls whose counter should be read now (each at most every ``interval`` seconds)."""
        return [g for g, w in self._calls.items() if now >= w.next_sample]

    def feed(self, generation: int, rx_count: int, now: float) -> float | None:
        """Record one sample. Returns the seconds without RTP when that reached the timeout (the call is
        then no longer watched, so it is reported once), else None."""
        w = self._calls.get(generation)
        if w is None:
            return None
        w.next_sample = now + self.interval
        if rx_count != w.last_count:
            if w.last_count is not None or rx_count > 0:
                # A first sample of 0 only sets the baseline (the clock runs from start). A positive one
                # counts as traffic: never early, at worst one interval late after a renegotiation.
                w.last_change = now
            w.last_count = rx_count
        silent = now - w.last_change
        if silent >= self.timeout:
            del self._calls[generation]
            return silent
        return None

    def __contains__(self, generation: int) -> bool:
        return generation in self._calls
