"""Edge timing for the panel's inputs: pure filters, one dispatcher thread that runs deadlines, one outbox.

Why not gpiozero's ``hold_time``: its hold thread starts timing when *it* wakes up, not at the edge, and
each :class:`gpiozero.Button` owns a thread. Here the filters are sans-I/O (fed ``(state, at)`` and asked
``check(generation, now)``), so they are tested with plain numbers, and a single :class:`Dispatcher`
thread per panel sleeps until the earliest deadline (``Condition.wait`` on the monotonic clock, well under
a millisecond late), qualifies the press, drives the relay when that is the panel's own job (exit button,
tamper block, the end of a pulse) and drops the event into the :class:`Outbox`, whose thread hands it to the
loop. gpiozero's callbacks therefore only record the edge and return, and nothing on the dispatcher waits for
the event loop: a busy or wedged loop delays events, never the panel's timing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from hw.events import EventSink, HwEvent

__all__ = ["Dispatcher", "Outbox", "PressFilter", "SettleFilter"]

log = logging.getLogger(__name__)


class PressFilter:
    """Qualifies presses: held ``min_press`` seconds, at most one per ``holdoff`` seconds.

    Feed every edge to :meth:`edge`; it returns ``(generation, deadline)`` when a candidate press starts.
    At the deadline call :meth:`check` with that generation: it returns the press time (the edge) if the
    contact was held all along. A release, or any newer edge, bumps the generation so stale checks fail.
    A release that comes after ``min_press`` but before a late check ran (a loaded machine) still
    counts: the press is ripe and the next :meth:`check` returns it. Not thread-safe by itself: the owner
    holds a lock.
    """

    def __init__(self, min_press: float, holdoff: float) -> None:
        self.min_press = min_press
        self.holdoff = holdoff
        self._generation = 0
        self._candidate: float | None = None
        self._last_press: float | None = None
        self._ripe: float | None = None

    def edge(self, active: bool, at: float) -> tuple[int, float] | None:
        self._generation += 1
        candidate, self._candidate = self._candidate, None
        if not active:
            if candidate is not None and at - candidate >= self.min_press - 1e-6:
                self._ripe = self._last_press = candidate
                return self._generation, at
            return None
        if self._last_press is not None and at - self._last_press < self.holdoff:
            return None  # an edge storm after a press: ignored until the hold-off has passed
        self._candidate = at
        return self._generation, at + self.min_press

    def check(self, generation: int, now: float) -> float | None:
        if self._ripe is not None:
            ripe, self._ripe = self._ripe, None
            return ripe
        at = self._candidate
        # 1e-6: Condition.wait may return a hair early; the deadline itself is the qualifying moment.
        if generation != self._generation or at is None or now - at < self.min_press - 1e-6:
            return None
        self._candidate = None
        self._last_press = at
        return at


class SettleFilter:
    """Reports a contact's state once it has been stable for ``settle`` seconds (reed switches bounce).

    Same protocol as :class:`PressFilter`; :meth:`check` returns ``(state, at)`` for a new stable state,
    ``at`` being the edge that started it.
    """

    def __init__(self, settle: float, initial: bool) -> None:
        self.settle = settle
        self.state = initial
        self._generation = 0
        self._pending: tuple[bool, float] | None = None

    def edge(self, state: bool, at: float) -> tuple[int, float] | None:
        self._generation += 1
        self._pending = None if state == self.state else (state, at)
        return None if self._pending is None else (self._generation, at + self.settle)

    def check(self, generation: int, now: float) -> tuple[bool, float] | None:
        pending = self._pending
        if generation != self._generation or pending is None or now - pending[1] < self.settle - 1e-6:
            return None
        self._pending = None
        self.state = pending[0]
        return pending


class Handle:
    """A scheduled call; :meth:`cancel` is safe from any thread and idempotent."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Dispatcher:
    """One daemon thread that runs callbacks at monotonic deadlines, in deadline then FIFO order.

    Callbacks run on this thread and must be quick and never wait for the event loop (events leave through an
    :class:`Outbox`), so deadlines stay on time whatever the loop does; an exception in one is logged and does
    not stop the others.
    """

    def __init__(self, name: str = "hw-dispatch") -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self._closed = False
        # One long-lived thread per panel (not per edge or per operation): gpiozero's callbacks must return at
        # once, and the minimum-hold deadlines need a clock that does not depend on the loop being idle.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, when: float, fn: Callable[[], None]) -> Handle:
        handle = Handle(when, fn)
        with self._cond:
            if self._closed:
                handle.cancelled = True
                return handle
            heapq.heappush(self._heap, (when, next(self._seq), handle))
            self._cond.notify()
        return handle

    def call_soon(self, fn: Callable[[], None]) -> Handle:
        return self.call_at(time.monotonic(), fn)

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the callback in progress; pending ones are dropped."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, handle = self._heap[0]
                if handle.cancelled:
                    heapq.heappop(self._heap)
                    continue
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            try:
                handle.fn()
            except Exception:
                log.exception("hw dispatcher: callback %r failed", handle.fn)


class Outbox:
    """An :class:`~hw.events.EventSink` that returns at once: events are handed to the real sink (the daemon's
    ``EventChannel.post``, which waits until the loop has taken each one) from a thread of their own, in order.

    So a busy or wedged loop delays only the events, never the panel's timing: press qualification, the exit
    button's relay pulse and a tamper block run on the panel's :class:`Dispatcher`, which never waits for it.
    """

    def __init__(self, sink: EventSink, name: str = "hw-outbox") -> None:
        self._sink = sink
        self._dispatcher = Dispatcher(name)

    def __call__(self, event: HwEvent, /) -> None:
        self._dispatcher.call_soon(partial(self._sink, event))

    def close(self) -> None:
        """Stop delivering; events not yet delivered are dropped (the app is shutting down). Does not wait for an
        event being delivered: the loop itself closes the panel, and the delivery may be waiting for that loop."""
        self._dispatcher.close(timeout=0)
