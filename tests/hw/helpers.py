"""Helpers shared by the hw tests and the bench: an event recorder and small config builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from hw.events import HwEvent


@dataclass
class Recorder:
    """A thread-safe ``post``: records each event with the monotonic time ``post`` was called."""

    events: list[HwEvent] = field(default_factory=list)
    posted_at: list[float] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def post(self, event: HwEvent) -> None:
        now = time.monotonic()
        with self._cond:
            self.events.append(event)
            self.posted_at.append(now)
            self._cond.notify_all()

    def of(self, kind: type) -> list[HwEvent]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type, count: int = 1, timeout: float = 2.0) -> list[HwEvent]:
        """Block (a sync test's thread, never the loop) until ``count`` events of ``kind`` arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([e for e in self.events if isinstance(e, kind)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {count} x {kind.__name__}; got {self.events}")
                self._cond.wait(left)
            return [e for e in self.events if isinstance(e, kind)]


def hold(pin: object, seconds: float, *, pull_up: bool = True) -> None:
    """Press (drive to the active level) for ``seconds``, then release. ``pin`` is a MockPin."""
    press, release = (pin.drive_low, pin.drive_high) if pull_up else (pin.drive_high, pin.drive_low)  # type: ignore[attr-defined]
    press()
    time.sleep(seconds)
    release()


async def wait_until(predicate: Callable[[], object], limit: float = 2.0, poll: float = 0.001) -> None:
    """Poll ``predicate`` from the loop. The conditions here are set by pins and foreign threads, so
    there is no anyio.Event to wait on; polling keeps the tests honest about what they observe."""
    with anyio.fail_after(limit):
        while not predicate():
            await anyio.sleep(poll)
