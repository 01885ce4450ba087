"""The one way a foreign thread (the SIP owner thread, the hw panel's dispatcher) reaches the event loop.

This is the only module that uses ``anyio.from_thread`` (a test greps daemon/ and hw/ for it). hw/ reaches the loop
only through :meth:`EventChannel.post`, which implements its :class:`hw.events.EventSink`: once per event.

Rules this module enforces so that callers cannot get them wrong:

* Callbacks never run async code or touch the loop's objects themselves; they hand a small synchronous
  function to :meth:`LoopBridge.call`, which runs it *in the loop* via ``anyio.from_thread.run_sync``
  with the loop's token (the naive design called asyncio from pjsua's 'Dummy-1' thread and failed).
* ``from_thread.run_sync`` blocks its caller until the loop has run the function. Called on the loop
  thread itself it would wait for itself forever; that happens for real, e.g. ``MockPin.drive_low()``
  called from a test on the loop thread fires gpiozero's callback synchronously. So on the loop thread the
  function is simply run in place.
* The loop must never block waiting on a foreign thread (it only *awaits*); otherwise a callback blocked
  here and the loop blocked there deadlock. This is why the SIP owner thread only ever posts here.
* Once the loop is gone (shutdown), late callbacks are counted and dropped, never raised into pjsua2 or
  gpiozero, whose threads would print and swallow them anyway.
* :meth:`LoopBridge.call_soon` (and :meth:`EventChannel.post_soon`) queue the function for the loop and return at
  once, without waiting for it to run: for a producer that must never wait for the loop (the panel's dispatcher,
  which times presses and relay pulses). Calls are run in the order they were queued, from any one thread.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["EventChannel", "LoopBridge"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopBridge:
    """Marshals calls from any thread into the running anyio loop. Create it inside the loop."""

    def __init__(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._closed = False
        self.dropped = 0

    def call(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` in the loop and return once it has run (or at once if the loop is gone).

        ``fn`` must be quick and must not block: it runs on the loop thread.
        """
        if self._closed:
            self.dropped += 1
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        try:
            anyio.from_thread.run_sync(fn, *args, token=self._token)
        except (anyio.RunFinishedError, RuntimeError) as exc:
            # The loop finished between our check and the call: the event has nowhere to go.
            self.dropped += 1
            log.debug("bridge: dropped %r after loop end (%s)", fn, exc)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` to run in the loop and return at once, from any thread (the loop's own included:
        it then runs on a later turn, never in place). ``fn`` must be quick and must not block.

        One thread's calls run in the order queued. A call queued as the loop ends may never run (shutdown)."""
        if self._closed:
            self.dropped += 1
            return
        try:
            self._token.backend_class.run_sync_soon(fn, args, self._token.native_token)
        except (anyio.RunFinishedError, RuntimeError) as exc:
            self.dropped += 1
            log.debug("bridge: dropped %r after loop end (%s)", fn, exc)

    def close(self) -> None:
        """Refuse further calls; from now on they are counted in ``dropped``."""
        self._closed = True


class EventChannel(Generic[T]):
    """An unbounded-by-policy queue of events from foreign threads into the loop.

    Producers call :meth:`post` from any thread; one consumer iterates :attr:`receive`. The buffer is
    effectively unbounded because dropping an event (a DTMF digit, a hang-up) is worse than memory: the
    producers are rate-limited elsewhere (debounce, pjsua's maxCalls).
    """

    def __init__(self, bridge: LoopBridge, max_buffer: float = math.inf) -> None:
        self._bridge = bridge
        send, receive = anyio.create_memory_object_stream[T](max_buffer)
        self._send: MemoryObjectSendStream[T] = send
        self.receive: MemoryObjectReceiveStream[T] = receive
        self.lost = 0  # events the consumer should have had: an error
        self.after_close = 0  # events posted after close() (shutdown): expected

    def post(self, event: T) -> None:
        """Deliver ``event`` to the loop. Safe from any thread, including the loop's own."""
        self._bridge.call(self._send_in_loop, event)

    def post_soon(self, event: T) -> None:
        """Deliver ``event`` to the loop without waiting for it to be taken (:meth:`LoopBridge.call_soon`): for a
        producer that must never wait for the loop. Safe from any thread; one thread's events arrive in order."""
        self._bridge.call_soon(self._send_in_loop, event)

    def _send_in_loop(self, event: T) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.ClosedResourceError:
            # We closed it: the daemon is stopping, and what its parts report while they close (a relay
            # pulse ending) has nobody left to act on it. Said, not an error.
            self.after_close += 1
            log.info("event channel closed (stopping): %r not delivered", event)
        except (anyio.WouldBlock, anyio.BrokenResourceError):
            self.lost += 1
            log.error("event channel: lost %r (consumer gone or full)", event)

    def close(self) -> None:
        self._send.close()
