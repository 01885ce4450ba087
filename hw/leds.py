"""Status LEDs: one :meth:`StatusLeds.show` call per panel state, patterns from a single table."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, GPIOZeroError

from hw.errors import HardwareError
from hw.settings import LedConfig

__all__ = ["PATTERNS", "Blink", "LedState", "StatusLeds"]

log = logging.getLogger(__name__)


class LedState(enum.Enum):
    IDLE = "idle"
    CALLING = "calling"
    IN_CALL = "in_call"
    DOOR_OPEN = "door_open"
    FAULT = "fault"


@dataclass(frozen=True)
class Blink:
    """An LED pattern: steady on (``off_time == 0``), off (``on_time == 0``) or blinking."""

    on_time: float
    off_time: float

    @property
    def steady(self) -> bool | None:
        """True for steady on, False for off, None for blinking."""
        if self.off_time == 0:
            return True
        if self.on_time == 0:
            return False
        return None


ON = Blink(1.0, 0.0)
OFF = Blink(0.0, 1.0)

# Readable from a metre away and distinct without colour: the visitor sees "ready" (steady), "ringing"
# (slow blink), "talking" (mostly on), "come in" (fast blink); the installer sees the red fault LED,
# with the status LED's short heartbeat showing the daemon still runs.
PATTERNS: Mapping[LedState, Mapping[str, Blink]] = {
    LedState.IDLE: {"status": ON, "fault": OFF},
    LedState.CALLING: {"status": Blink(0.5, 0.5), "fault": OFF},
    LedState.IN_CALL: {"status": Blink(0.9, 0.1), "fault": OFF},
    LedState.DOOR_OPEN: {"status": Blink(0.1, 0.1), "fault": OFF},
    LedState.FAULT: {"status": Blink(0.05, 1.95), "fault": ON},
}


class StatusLeds:
    """The panel's LEDs by name ("status", "fault"); missing ones are simply not driven.

    Wiring: GPIO -> 330 ohm resistor -> LED anode, cathode to ground (``active_high = false`` for an LED
    wired from 3V3 to the GPIO). Blinking uses gpiozero's background blink thread, one per LED.
    """

    def __init__(self, configs: Mapping[str, LedConfig], *, pin_factory: Any) -> None:
        self._lock = threading.Lock()
        self._leds: dict[str, Any] = {}
        self.state: LedState | None = None
        try:
            for name, cfg in configs.items():
                self._leds[name] = LED(
                    cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=pin_factory
                )
        except (GPIOZeroError, OSError) as exc:
            self.close()
            raise HardwareError(f"leds: cannot use the LED pins: {exc}") from exc

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._leds)

    def show(self, state: LedState, *, force: bool = False) -> None:
        """Show ``state``; showing the current state again does not restart the blink unless ``force``."""
        with self._lock:
            if state is self.state and not force:
                return
            self.state = state
            for name, led in self._leds.items():
                pattern = PATTERNS[state].get(name, OFF)
                try:
                    if pattern.steady is True:
                        led.on()
                    elif pattern.steady is False:
                        led.off()
                    else:
                        led.blink(on_time=pattern.on_time, off_time=pattern.off_time, background=True)
                except (GPIOZeroError, OSError) as exc:
                    log.error("leds: cannot drive %s: %s", name, exc)

    def is_lit(self, name: str) -> bool:
        return bool(self._leds[name].is_lit)

    def pin_of(self, name: str) -> Any:
        """The gpiozero pin behind LED ``name`` (tests and the self-test read its state back)."""
        return self._leds[name].pin

    def close(self) -> None:
        with self._lock:
            for led in self._leds.values():
                try:
                    led.close()
                except (GPIOZeroError, OSError) as exc:
                    log.error("leds: close failed: %s", exc)
            self._leds.clear()
