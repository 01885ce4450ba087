"""The panel's keypad: a 3x4 / 4x4 matrix on GPIO, or one button per key.

A matrix keypad is read without a polling timer: at rest every row is driven low and every column is an
input with its pull-up, so a pressed key pulls its column low and gpiozero calls back on the edge. After the
contacts settle, the :class:`~hw._timing.Dispatcher` thread scans once (one row low at a time) to find which
key it is, and drives every row low again. An idle keypad costs no wake-ups.

Guards, because the keypad is on the street:

* *ghost keys*: with three keys of a rectangle held, the fourth reads as pressed too. Any scan that finds more
  than one key is ignored (no key is reported until the keypad is back to at most one key).
* *stuck keys*: a key held longer than ``stuck_seconds`` (jammed, or a wire shorted) is reported once as
  :class:`KeyStuck` and ignored until it is released; the rest of the keypad keeps working where the matrix
  allows.
* one :class:`KeyPressed` per press: holding a key never repeats it.

Wiring (3x4, the usual membrane keypad): its 7 wires are rows 1-4 then columns 1-3; rows to the GPIOs in
``rows`` (outputs), columns to the GPIOs in ``columns`` (inputs, internal pull-ups). No resistors needed; a
diode per key (or a keypad with them) removes ghosting in hardware as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice, GPIOZeroError

from hw._timing import Dispatcher
from hw.errors import HardwareError
from hw.events import ButtonPressed, EventSink, HwEvent, KeyPressed, KeyStuck
from hw.inputs import DoorbellButton
from hw.settings import LAYOUT_3X4, LAYOUT_4X4, ButtonConfig, MatrixKeypadConfig

# The events live in hw.events (the panel's one event union) and the settings in hw.settings; re-exported here.
__all__ = [
    "LAYOUT_3X4",
    "LAYOUT_4X4",
    "ButtonKeypad",
    "KeyPressed",
    "KeyStuck",
    "Keypad",
    "MatrixKeypad",
    "MatrixKeypadConfig",
]

log = logging.getLogger(__name__)


class MatrixKeypad:
    """Posts :class:`KeyPressed` / :class:`KeyStuck` through ``post`` (from the dispatcher thread)."""

    def __init__(
        self, config: MatrixKeypadConfig, *, pin_factory: Any, post: EventSink, dispatcher: Dispatcher | None = None
    ) -> None:
        self._config = config
        self._post = post
        self._owns_dispatcher = dispatcher is None
        self._dispatcher = dispatcher or Dispatcher("hw-keypad")
        # Re-entrant: with mock pins a row change during the scan calls _on_edge on this same thread.
        self._lock = threading.RLock()
        self._scanning = False
        self._rest: tuple[bool, ...] = ()  # the columns' levels with every row driven: what a change changes
        self._generation = 0
        self._current: str | None = None  # the one key held now (reported already)
        self._candidate: tuple[str, float] | None = None  # seen at a press edge, not yet settled
        self._stuck: set[str] = set()
        self._rows: list[DigitalOutputDevice] = []
        self._columns: list[DigitalInputDevice] = []
        try:
            for pin in config.rows:  # active_high=False: "on" drives the row low, the level a key pulls to
                self._rows.append(
                    DigitalOutputDevice(pin, active_high=False, initial_value=True, pin_factory=pin_factory)
                )
            for pin in config.columns:
                column = DigitalInputDevice(pin, pull_up=True, pin_factory=pin_factory)
                column.when_activated = column.when_deactivated = self._on_edge
                self._columns.append(column)
            self._rest = self._levels()
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise HardwareError(f"keypad: cannot use its GPIOs: {exc}") from exc

    def _levels(self) -> tuple[bool, ...]:
        return tuple(column.is_active for column in self._columns)

    def _on_edge(self) -> None:
        # gpiozero's thread (or the caller's, with mock pins): stamp and schedule, nothing else.
        at = time.monotonic()
        with self._lock:
            levels = self._levels()
            # Our own scan moves the columns while a key is held; on real pins those edges arrive after the scan.
            # Only a change of the resting levels is a key pressed or released.
            if self._scanning or levels == self._rest:
                return
            self._rest = levels
            self._generation += 1
            generation = self._generation
            if any(levels) and self._candidate is None:
                # A first look at once (a few GPIO writes): if the settle check runs late on a loaded machine, the
                # key may be up again by then, and a press the visitor made would be lost.
                held = self._scan() - self._stuck
                if len(held) == 1:
                    self._candidate = (next(iter(held)), at)
        self._dispatcher.call_at(at + self._config.settle_ms / 1000, lambda: self._settled(generation, at))

    def _scan(self) -> set[str]:
        """Which keys are held now. Called with the lock held, on the dispatcher thread."""
        self._scanning = True
        try:
            held: set[str] = set()
            for r, row in enumerate(self._rows):
                for other in self._rows:
                    other.value = other is row
                for c, column in enumerate(self._columns):
                    if column.is_active:
                        held.add(self._config.layout[r][c])
            return held
        finally:
            for row in self._rows:
                row.on()
            self._rest = self._levels()
            self._scanning = False

    def _settled(self, generation: int, at: float) -> None:
        with self._lock:
            if generation != self._generation:
                return  # more edges came: a later check will look
            report = self._decide(at)
            generation = self._generation
        if report is not None:
            self._post(report)
            if report.key == self._current:
                key = report.key
                self._dispatcher.call_at(
                    report.at + self._config.stuck_seconds, lambda: self._check_stuck(key, generation)
                )

    def _decide(self, at: float) -> KeyPressed | None:
        """What a settled keypad means: a new key, or nothing. Called with the lock held."""
        held = self._scan()
        self._stuck &= held  # a stuck key that was released works again
        held -= self._stuck
        candidate, self._candidate = self._candidate, None
        if len(held) > 1:
            log.debug("keypad: %d keys at once ignored (rollover or ghosting)", len(held))
            return None
        key = next(iter(held), None)
        if key is None and candidate is not None and at - candidate[1] >= self._config.settle_ms / 1000:
            # Pressed and already released by the time this check ran, but held longer than a bounce.
            self._current = None
            return KeyPressed(*candidate)
        if key == self._current:
            return None
        self._current = key
        return None if key is None else KeyPressed(key, at)

    def _check_stuck(self, key: str, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._current != key or key not in self._scan():
                return
            self._stuck.add(key)
            self._current = None
        log.error(
            "keypad: key %r held for %.0f s: ignored until released (jammed or shorted?)",
            key,
            self._config.stuck_seconds,
        )
        self._post(KeyStuck(key, time.monotonic()))

    def close(self) -> None:
        for device in (*self._columns, *self._rows):
            device.close()
        self._columns.clear()
        self._rows.clear()
        if self._owns_dispatcher:
            self._dispatcher.close()


class ButtonKeypad:
    """A keypad wired as one button per key (key -> GPIO, each to ground): each is a debounced
    :class:`~hw.inputs.DoorbellButton` whose presses are posted as :class:`KeyPressed`."""

    def __init__(
        self,
        keys: Mapping[str, int],
        *,
        pin_factory: Any,
        post: EventSink,
        min_press_ms: float = 30.0,
        holdoff_ms: float = 150.0,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._owns_dispatcher = dispatcher is None
        self._dispatcher = dispatcher or Dispatcher("hw-keypad")
        self._post = post
        self._buttons: list[DoorbellButton] = []
        try:
            for key, pin in keys.items():
                config = ButtonConfig(key, pin, min_press_ms=min_press_ms, holdoff_ms=holdoff_ms)
                self._buttons.append(
                    DoorbellButton(config, pin_factory=pin_factory, post=self._key, dispatcher=self._dispatcher)
                )
        except HardwareError:
            self.close()
            raise

    def _key(self, event: HwEvent) -> None:
        if isinstance(event, ButtonPressed):
            self._post(KeyPressed(event.button, event.at))

    def close(self) -> None:
        for button in self._buttons:
            button.close()
        self._buttons.clear()
        if self._owns_dispatcher:
            self._dispatcher.close()


Keypad = MatrixKeypad | ButtonKeypad
