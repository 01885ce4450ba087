"""The panel's contact inputs: doorbell buttons, the exit button, the door contact and the tamper switch.

Each wraps a :class:`gpiozero.DigitalInputDevice` (BCM numbering, pull-up from config, so "active" means
the contact is closed to ground). gpiozero's callbacks only stamp the edge with :func:`time.monotonic`
and hand it to a filter; the :class:`~hw._timing.Dispatcher` thread runs the deadlines and calls
``post``. We stamp on entry to the callback rather than using the pin factory's ticks because lgpio's
ticks are the kernel's clock and mock ticks are ``monotonic``: one clock for all events matters more
than the few microseconds between the edge and the callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, GPIOZeroError

from hw._timing import Dispatcher, Handle, PressFilter, SettleFilter
from hw.errors import HardwareError
from hw.events import (
    ButtonPressed,
    DoorClosed,
    DoorHeldOpen,
    DoorOpened,
    EventSink,
    ExitRequested,
    TamperCleared,
    TamperTriggered,
)
from hw.settings import MAIN_DOOR, ButtonConfig, DoorContactConfig, InputConfig, TamperConfig

__all__ = ["CONTACT_SETTLE_S", "EXIT_HOLDOFF_S", "DoorContact", "DoorbellButton", "ExitButton", "TamperSwitch"]

log = logging.getLogger(__name__)


# Reed and micro switches bounce for a few ms; 20 ms of stable state is well above that and far below
# anything a person notices on a door.
CONTACT_SETTLE_S = 0.020
# Exit presses only extend the relay pulse, so a short hold-off just keeps a stuck button from flooding.
EXIT_HOLDOFF_S = 0.5


class _Input:
    """Common plumbing: the gpiozero device, the lock around the filter, the (maybe owned) dispatcher."""

    def __init__(self, what: str, pin: int, pull_up: bool, *, pin_factory: Any, dispatcher: Dispatcher | None) -> None:
        self.what = what
        self._owns_dispatcher = dispatcher is None
        self._dispatcher = dispatcher or Dispatcher(f"hw-{what}")
        self._lock = threading.Lock()
        try:
            self._device = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)
        except (GPIOZeroError, OSError) as exc:
            if self._owns_dispatcher:
                self._dispatcher.close()
            raise HardwareError(f"{what}: cannot use GPIO{pin}: {exc}") from exc
        self._device.when_activated = self._on_activated
        self._device.when_deactivated = self._on_deactivated

    @property
    def pin(self) -> int:
        return int(self._device.pin.info.name.removeprefix("GPIO"))

    @property
    def is_active(self) -> bool:
        return bool(self._device.is_active)

    def _on_activated(self) -> None:
        self._edge(True, time.monotonic())

    def _on_deactivated(self) -> None:
        self._edge(False, time.monotonic())

    def _edge(self, active: bool, at: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._device.close()
        if self._owns_dispatcher:
            self._dispatcher.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.what} GPIO{self.pin} active={self.is_active}>"


class _PressInput(_Input):
    """An input whose presses are qualified by a :class:`PressFilter`, then handed to :meth:`_pressed`."""

    def __init__(
        self,
        what: str,
        pin: int,
        pull_up: bool,
        min_press: float,
        holdoff: float,
        *,
        pin_factory: Any,
        dispatcher: Dispatcher | None,
    ) -> None:
        self._filter = PressFilter(min_press, holdoff)
        # Seconds from the qualifying moment (edge + min_press) to the start of ``post``: the measure of
        # how precise the hold timing is. Read by tests and the bench.
        self.last_post_latency: float | None = None
        super().__init__(what, pin, pull_up, pin_factory=pin_factory, dispatcher=dispatcher)

    def _edge(self, active: bool, at: float) -> None:
        with self._lock:
            due = self._filter.edge(active, at)
        if due is not None:
            generation, deadline = due
            self._dispatcher.call_at(deadline, lambda: self._check(generation))

    def _check(self, generation: int) -> None:
        now = time.monotonic()
        with self._lock:
            at = self._filter.check(generation, now)
        if at is not None:
            self.last_post_latency = now - (at + self._filter.min_press)
            self._pressed(at)

    def _pressed(self, at: float) -> None:
        raise NotImplementedError


class DoorbellButton(_PressInput):
    """A doorbell button posting :class:`ButtonPressed`.

    Wiring: one leg to the GPIO, the other to ground; the internal pull-up holds the pin high (set
    ``pull_up = false`` only with an external pull-down and the button to 3V3). Long cable runs pick up
    noise: a press counts only once the contact has stayed closed ``min_press_ms``, and a storm of edges
    rings at most once per ``holdoff_ms``.
    """

    def __init__(
        self, config: ButtonConfig, *, pin_factory: Any, post: EventSink, dispatcher: Dispatcher | None = None
    ) -> None:
        self.name = config.name
        self._post = post
        super().__init__(
            f"button {config.name!r}",
            config.pin,
            config.pull_up,
            config.min_press_ms / 1000,
            config.holdoff_ms / 1000,
            pin_factory=pin_factory,
            dispatcher=dispatcher,
        )

    def _pressed(self, at: float) -> None:
        # Posted before the log line, and the line at DEBUG: the daemon logs the press at INFO as the visit's
        # BUTTON_PRESSED (button, apartment, what was done) once the INVITE has left. At INFO here it ran on this
        # thread beside the loop's path to the INVITE and woke the log's writer thread on the other CPU, which on a
        # Pi-sized CPU quota took the budget the INVITE needed (issue 18, benchmarks.press_sched).
        self._post(ButtonPressed(self.name, at))
        log.debug("button %s pressed", self.name)


class ExitButton(_PressInput):
    """The request-to-exit button inside the door: runs ``action`` (pulse the relay) then posts
    :class:`ExitRequested`, so the door opens even if the rest of the daemon is busy.

    Wiring: one leg to the GPIO, the other to ground (internal pull-up).
    """

    def __init__(
        self,
        config: InputConfig,
        *,
        pin_factory: Any,
        post: EventSink,
        action: Callable[[], bool] | None = None,
        dispatcher: Dispatcher | None = None,
        door: str = MAIN_DOOR,
    ) -> None:
        self._post = post
        self._action = action
        self.door = door
        super().__init__(
            "exit button",
            config.pin,
            config.pull_up,
            config.min_press_ms / 1000,
            EXIT_HOLDOFF_S,
            pin_factory=pin_factory,
            dispatcher=dispatcher,
        )

    def _pressed(self, at: float) -> None:
        opened = False
        if self._action is not None:
            try:
                opened = self._action()
            except HardwareError as exc:
                log.error("exit button: could not open the door: %s", exc)
        log.info("exit requested (door %s %s)", self.door, "opened" if opened else "NOT opened")
        self._post(ExitRequested(at, opened=opened, door=self.door))


class _SettledInput(_Input):
    """A two-state contact (door, tamper): a change is reported once it has been stable CONTACT_SETTLE_S.

    ``active_means`` is the logical state when the pin is active (contact closed to ground). The state at
    start-up is reported at start-up, so a door already open or a tamper already present is not missed.
    """

    def __init__(
        self, what: str, pin: int, pull_up: bool, *, active_means: bool, pin_factory: Any, dispatcher: Dispatcher | None
    ) -> None:
        self._active_means = active_means
        # Before the device exists: its callbacks may fire as soon as it does.
        self._filter = SettleFilter(CONTACT_SETTLE_S, initial=False)
        super().__init__(what, pin, pull_up, pin_factory=pin_factory, dispatcher=dispatcher)
        self._edge(self.is_active == active_means, time.monotonic())

    @property
    def _settled(self) -> bool:
        """The debounced state (what was last reported)."""
        with self._lock:
            return self._filter.state

    def _on_activated(self) -> None:
        self._edge(self._active_means, time.monotonic())

    def _on_deactivated(self) -> None:
        self._edge(not self._active_means, time.monotonic())

    def _edge(self, state: bool, at: float) -> None:
        with self._lock:
            due = self._filter.edge(state, at)
        if due is not None:
            generation, deadline = due
            self._dispatcher.call_at(deadline, lambda: self._check(generation))

    def _check(self, generation: int) -> None:
        with self._lock:
            change = self._filter.check(generation, time.monotonic())
        if change is not None:
            self._changed(*change)

    def _changed(self, state: bool, at: float) -> None:
        raise NotImplementedError


class DoorContact(_SettledInput):
    """The door contact: posts :class:`DoorOpened` / :class:`DoorClosed` and, after the door has stayed
    open ``held_open_seconds``, :class:`DoorHeldOpen`.

    Wiring: reed contact between the GPIO and ground (internal pull-up). With ``open_when_active = true``
    the contact closes (pin low) when the door opens; set it false for a contact that opens with the door.
    A door already open at start-up is reported as opened at start-up.
    """

    def __init__(
        self,
        config: DoorContactConfig,
        *,
        pin_factory: Any,
        post: EventSink,
        dispatcher: Dispatcher | None = None,
        door: str = MAIN_DOOR,
    ) -> None:
        self._config = config
        self._post = post
        self.door = door
        self._alarm: Handle | None = None
        super().__init__(
            "door contact",
            config.pin,
            config.pull_up,
            active_means=config.open_when_active,
            pin_factory=pin_factory,
            dispatcher=dispatcher,
        )

    @property
    def is_open(self) -> bool:
        return self._settled

    def _changed(self, is_open: bool, at: float) -> None:
        with self._lock:
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None
            if is_open:
                self._alarm = self._dispatcher.call_at(at + self._config.held_open_seconds, lambda: self._held_open(at))
        log.info("door %s %s", self.door, "opened" if is_open else "closed")
        self._post(DoorOpened(at, self.door) if is_open else DoorClosed(at, self.door))

    def _held_open(self, opened_at: float) -> None:
        with self._lock:
            if self._alarm is None or not self._filter.state:
                return
            self._alarm = None
        log.warning("door %s held open for %.0f s", self.door, self._config.held_open_seconds)
        self._post(DoorHeldOpen(time.monotonic(), opened_at, self.door))

    def close(self) -> None:
        with self._lock:
            if self._alarm is not None:
                self._alarm.cancel()
        super().close()


class TamperSwitch(_SettledInput):
    """The tamper switch: posts :class:`TamperTriggered` / :class:`TamperCleared` and runs ``on_tamper``
    (the panel blocks the relay for ``block_seconds``).

    Wiring: switch between the GPIO and ground (internal pull-up). ``tampered_when_active = true``: the
    switch closes on tamper. The fail-safe choice is a normally-closed loop with
    ``tampered_when_active = false``, so a cut wire reads as tamper. A tamper present at start-up is
    reported at start-up.
    """

    def __init__(
        self,
        config: TamperConfig,
        *,
        pin_factory: Any,
        post: EventSink,
        on_tamper: Callable[[], None] | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._config = config
        self._post = post
        self._on_tamper = on_tamper
        super().__init__(
            "tamper switch",
            config.pin,
            config.pull_up,
            active_means=config.tampered_when_active,
            pin_factory=pin_factory,
            dispatcher=dispatcher,
        )

    @property
    def tampered(self) -> bool:
        return self._settled

    def _changed(self, tampered: bool, at: float) -> None:
        if tampered:
            log.warning("tamper switch triggered")
            if self._on_tamper is not None:
                self._on_tamper()
            self._post(TamperTriggered(at))
        else:
            log.info("tamper switch cleared")
            self._post(TamperCleared(at))
