"""The door-lock relay: fail-secure pulses owned by an anyio task.

Fail-secure means the lock is energized only while a pulse is running, and every other path leaves it
de-energized: construction (so a restart after a crash releases a relay the dead process left on),
:meth:`Relay.close`, the end or cancellation of :meth:`Relay.run`, a tamper block, and any error while
driving the pin. :meth:`Relay.open` refuses to energize when no :meth:`Relay.run` task is there to end
the pulse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from gpiozero import DigitalOutputDevice, GPIOZeroError

from hw.errors import HardwareError
from hw.events import HwEvent, RelayChanged
from hw.settings import RelayConfig

__all__ = ["Relay"]

log = logging.getLogger(__name__)


class Relay:
    """The door-lock relay on ``config.pin``.

    Wiring: the GPIO drives the relay module's IN (or a transistor's base through 1 kohm); never the coil
    directly. ``active_high = false`` for the common opto-isolated modules that energize on a low input.
    The lock's strike goes on the relay's NO contact so that a dead Pi leaves the door locked.

    The app's task group runs :meth:`run`; :meth:`open` is a quick call from the loop (or, thread-safely,
    from the panel's dispatcher thread for the exit button). A second :meth:`open` during a pulse extends
    it to ``max(current end, now + seconds)``: it never stacks.
    """

    def __init__(
        self,
        config: RelayConfig,
        *,
        pin_factory: Any,
        post: Callable[[HwEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._post = post
        self._clock = clock
        self._lock = threading.Lock()
        self._release_at: float | None = None
        self._blocked_until = 0.0
        self._energized = False
        self._wake = anyio.Event()
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        try:
            # initial_value=False drives the pin to the de-energized level at once, whatever state a
            # crashed predecessor left it in.
            self._device = DigitalOutputDevice(
                config.pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory
            )
        except (GPIOZeroError, OSError) as exc:
            raise HardwareError(f"relay: cannot use GPIO{config.pin}: {exc}") from exc
        log.info("relay on GPIO%d de-energized (active_%s)", config.pin, "high" if config.active_high else "low")

    # -- state -----------------------------------------------------------------------------------------

    @property
    def energized(self) -> bool:
        return self._energized

    @property
    def running(self) -> bool:
        return self._token is not None

    @property
    def blocked(self) -> bool:
        return self._clock() < self._blocked_until

    @property
    def release_at(self) -> float | None:
        return self._release_at

    def __repr__(self) -> str:
        state = "energized" if self._energized else "released"
        return f"<Relay GPIO{self._config.pin} {state}{' blocked' if self.blocked else ''}>"

    # -- commands --------------------------------------------------------------------------------------

    def open(self, seconds: float | None = None) -> bool:
        """Energize for ``seconds`` (default ``pulse_seconds``), extending a running pulse.

        Returns False, leaving the door locked, while blocked. Raises :class:`HardwareError` when no
        :meth:`run` task is running (nothing would end the pulse) or the pin cannot be driven.
        """
        seconds = self._config.pulse_seconds if seconds is None else seconds
        if seconds <= 0:
            raise ValueError(f"relay pulse must be longer than zero, got {seconds}")
        with self._lock:
            if self._token is None:
                raise HardwareError("relay: open refused, its run() task is not running")
            now = self._clock()
            if now < self._blocked_until:
                log.warning("relay: open refused, blocked for %.1f s more", self._blocked_until - now)
                return False
            self._release_at = max(self._release_at or now, now + seconds)
            changed = self._drive(True)
        if changed:
            self._notify(True, now)
        self._wake_runner()
        return True

    def release(self) -> None:
        """De-energize now and forget any pulse. Safe from any thread; never raises."""
        with self._lock:
            self._release_at = None
            changed = self._drive(False)
        if changed:
            self._notify(False, self._clock())

    def block(self, seconds: float) -> None:
        """Release now and refuse :meth:`open` for ``seconds`` (tamper). Safe from any thread."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        log.warning("relay blocked for %.1f s", seconds)
        self.release()

    def unblock(self) -> None:
        with self._lock:
            self._blocked_until = 0.0

    async def run(self) -> None:
        """Own the pulse timing until cancelled; the relay is released on the way out, whatever the reason."""
        if self._token is not None:
            raise HardwareError("relay: run() is already running")
        with self._lock:
            self._wake = anyio.Event()  # bound to this loop
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
        try:
            while True:
                if self._wake.is_set():
                    self._wake = anyio.Event()
                release_at = self._release_at
                if release_at is None:
                    await self._wake.wait()
                    continue
                delay = release_at - self._clock()
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    continue
                with self._lock:
                    # open() may have extended the pulse while we were waking up.
                    if self._release_at is None or self._release_at > self._clock():
                        continue
                    self._release_at = None
                    changed = self._drive(False)
                if changed:
                    self._notify(False, self._clock())
        finally:
            with self._lock:
                self._token = None
                self._loop_thread = None
            # Synchronous, so it also runs under cancellation: no await, nothing to shield.
            self.release()

    def close(self) -> None:
        """Release, then free the pin. Idempotent."""
        self.release()
        try:
            self._device.close()
        except (GPIOZeroError, OSError) as exc:
            log.error("relay: closing GPIO%d failed: %s", self._config.pin, exc)

    # -- internals -------------------------------------------------------------------------------------

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
        log.info("relay %s", "energized" if energized else "released")
        if self._post is not None:
            self._post(RelayChanged(energized, at))

    def _wake_runner(self) -> None:
        token, loop_thread = self._token, self._loop_thread
        if token is None:
            return
        if threading.get_ident() == loop_thread:
            self._wake.set()
            return
        try:
            anyio.from_thread.run_sync(self._wake.set, token=token)
        except (anyio.RunFinishedError, RuntimeError) as exc:
            # The loop ended between open() and here: nobody would end the pulse, so end it now.
            log.error("relay: run() gone while opening (%s); released", exc)
            self.release()
