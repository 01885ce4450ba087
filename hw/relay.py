"""The door-lock relay: fail-secure pulses, timed by the relay's own thread.

Fail-secure means the lock is energized only while a pulse is running, and every other path leaves it
de-energized: construction (so a restart after a crash releases a relay the dead process left on),
:meth:`Relay.close`, the end or cancellation of :meth:`Relay.run`, a tamper block, and any error while
driving the pin. :meth:`Relay.open` refuses to energize when no :meth:`Relay.run` task holds the relay's
lifetime in the app.

The end of a pulse is a deadline on a :class:`~hw._timing.Dispatcher` thread (the panel's), which never waits for
the event loop: a pulse ends on time even when the loop is busy or wedged. The relay's events
(:class:`RelayChanged`) go to ``post`` in the order the pin changed; ``post`` must return at once (the panel gives
its :class:`~hw._timing.Outbox`, or the daemon's ``EventChannel.post_soon``, which only queues).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from gpiozero import DigitalOutputDevice, GPIOZeroError

from hw._timing import Dispatcher, Handle
from hw.errors import HardwareError
from hw.events import EventSink, RelayChanged
from hw.settings import MAIN_DOOR, RelayConfig

__all__ = ["MAX_PULSE_S", "Relay"]

log = logging.getLogger(__name__)

# The longest pulse open() accepts, whatever the caller asks: a door unlocked for seconds, never for days
# (the configuration's own limit for pulse_seconds is the same).
MAX_PULSE_S = 60.0


class Relay:
    """The door-lock relay on ``config.pin``.

    Wiring: the GPIO drives the relay module's IN (or a transistor's base through 1 kohm); never the coil
    directly. ``active_high = false`` for the common opto-isolated modules that energize on a low input.
    The lock's strike goes on the relay's NO contact so that a dead Pi leaves the door locked.

    The app's task group runs :meth:`run`; :meth:`open`, :meth:`release` and :meth:`block` are quick calls safe
    from any thread (the loop, or the panel's dispatcher for the exit button and the tamper switch). A second
    :meth:`open` during a pulse extends it to ``max(current end, now + seconds)``: it never stacks.
    ``dispatcher`` times the pulses (the panel's; the relay makes its own if None). ``post`` receives
    :class:`RelayChanged` with the relay's lock held, from whichever thread changed the pin: it must not block.
    """

    def __init__(
        self,
        config: RelayConfig,
        *,
        pin_factory: Any,
        post: EventSink | None = None,
        dispatcher: Dispatcher | None = None,
        door: str = MAIN_DOOR,
    ) -> None:
        self._config = config
        self.door = door
        self._post = post
        self._lock = threading.Lock()
        self._release_at: float | None = None
        self._pulse_end: Handle | None = None
        self._blocked_until = 0.0
        self._energized = False
        self._running = False
        self._owns_timer = dispatcher is None
        self._timer = dispatcher or Dispatcher("hw-relay")
        try:
            # initial_value=False drives the pin to the de-energized level at once, whatever state a
            # crashed predecessor left it in.
            self._device = DigitalOutputDevice(
                config.pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory
            )
        except (GPIOZeroError, OSError) as exc:
            self._close_timer()
            raise HardwareError(f"relay: cannot use GPIO{config.pin}: {exc}") from exc
        log.info("relay on GPIO%d de-energized (active_%s)", config.pin, "high" if config.active_high else "low")

    # -- state -----------------------------------------------------------------------------------------

    @property
    def energized(self) -> bool:
        return self._energized

    @property
    def running(self) -> bool:
        return self._running

    @property
    def blocked(self) -> bool:
        return time.monotonic() < self._blocked_until

    def __repr__(self) -> str:
        state = "energized" if self._energized else "released"
        return f"<Relay GPIO{self._config.pin} {state}{' blocked' if self.blocked else ''}>"

    # -- commands --------------------------------------------------------------------------------------

    def open(self, seconds: float | None = None) -> bool:
        """Energize for ``seconds`` (default ``pulse_seconds``), extending a running pulse. Safe from any thread.

        Returns True only when the relay is energized for the pulse. Every refusal leaves the door locked:

        * False (logged) while blocked by tamper, and for a pulse that is not a finite number of seconds in
          ``(0, MAX_PULSE_S]``;
        * :class:`HardwareError` when no :meth:`run` task is running (the app is not up, or shutting down), the
          relay or its timer is closed, or the pin cannot be driven (the relay is then released).
        """
        seconds = self._config.pulse_seconds if seconds is None else seconds
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_PULSE_S):
            log.error("relay: open refused, a pulse of %r s is not within (0, %g] s", seconds, MAX_PULSE_S)
            return False
        with self._lock:
            if not self._running:
                raise HardwareError("relay: open refused, its run() task is not running")
            now = time.monotonic()
            if now < self._blocked_until:
                log.warning("relay: open refused, blocked for %.1f s more", self._blocked_until - now)
                return False
            release_at = max(self._release_at or now, now + seconds)
            # The end is scheduled before the pin moves: a timer that is already stopped would never end it.
            pulse_end = self._timer.call_at(release_at, self._end_pulse)
            if pulse_end.cancelled:
                raise HardwareError("relay: open refused, its timer is stopped (the panel is closing)")
            try:
                changed = self._drive(True)
            except HardwareError:
                pulse_end.cancel()
                raise
            if changed and (exact := time.monotonic() + seconds) > release_at:
                # Counted from the moment the lock really energized (driving the pin took a moment): a pulse is
                # never shorter than asked. The first deadline stays if the timer refuses the second.
                precise = self._timer.call_at(exact, self._end_pulse)
                if not precise.cancelled:
                    pulse_end.cancel()
                    release_at, pulse_end = exact, precise
            if self._pulse_end is not None:
                self._pulse_end.cancel()
            self._release_at, self._pulse_end = release_at, pulse_end
            if changed:
                self._notify(True, now)
        return True

    def release(self) -> None:
        """De-energize now and forget any pulse. Safe from any thread; never raises."""
        with self._lock:
            self._release_locked()

    def block(self, seconds: float) -> None:
        """Release now and refuse :meth:`open` for ``seconds`` (tamper). Safe from any thread. A NaN blocks until
        the restart (``max`` would silently ignore it and leave the relay free: fail-open)."""
        if math.isnan(seconds):
            seconds = math.inf
        with self._lock:
            self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)
            self._release_locked()
        log.warning("relay blocked for %.1f s", seconds)

    async def run(self) -> None:
        """Hold the relay's lifetime in the app until cancelled: :meth:`open` works only meanwhile, and the
        relay is released on the way out, whatever the reason."""
        with self.lifetime():
            await anyio.sleep_forever()

    @contextmanager
    def lifetime(self) -> Iterator[None]:
        """:meth:`run`'s lifetime as a plain context manager: the panel enters every door's at once, before its
        first await, so no door can be opened before the others are."""
        with self._lock:
            if self._running:
                raise HardwareError("relay: run() is already running")
            self._running = True
        try:
            yield
        finally:
            with self._lock:
                self._running = False
                # Synchronous, so it also runs under cancellation: no await, nothing to shield.
                self._release_locked()

    def close(self) -> None:
        """Release, stop the relay's own timer (if it made one), then free the pin. Idempotent."""
        self.release()
        self._close_timer()
        try:
            self._device.close()
        except (GPIOZeroError, OSError) as exc:
            log.error("relay: closing GPIO%d failed: %s", self._config.pin, exc)

    # -- internals (the lock held where noted) ----------------------------------------------------------

    def _end_pulse(self) -> None:
        """The timer thread, at the pulse's end."""
        with self._lock:
            # open() may have extended the pulse while this call was on its way.
            if self._release_at is None or self._release_at > time.monotonic():
                return
            self._release_locked()

    def _release_locked(self) -> None:
        self._release_at = None
        if self._pulse_end is not None:
            self._pulse_end.cancel()
            self._pulse_end = None
        if self._drive(False):
            self._notify(False, time.monotonic())

    def _drive(self, energize: bool) -> bool:
        """Set the pin (lock held). Returns whether the state changed. On failure tries to release."""
        if self._device.closed:
            if energize:
                raise HardwareError("relay: the device is closed")
            return False
        try:
            if energize:
                self._device.on()
            else:
                self._device.off()
        except (GPIOZeroError, OSError) as exc:
            self._release_at = None
            if energize:
                try:
                    self._device.off()
                except (GPIOZeroError, OSError):
                    log.critical("relay: GPIO%d cannot be released: %s", self._config.pin, exc)
                raise HardwareError(f"relay: driving GPIO{self._config.pin} failed: {exc}") from exc
            log.critical("relay: GPIO%d cannot be released: %s", self._config.pin, exc)
            return False
        changed = self._energized != energize
        self._energized = energize
        return changed

    def _notify(self, energized: bool, at: float) -> None:
        """Log and post a :class:`RelayChanged` (lock held, so events leave in the order the pin changed)."""
        log.info("relay %s", "energized" if energized else "released")
        if self._post is not None:
            self._post(RelayChanged(energized, at, self.door))

    def _close_timer(self) -> None:
        if self._owns_timer:
            self._timer.close()
