"""The panel's device settings: hw/'s own frozen dataclasses, so hw/ can be read, tested and reused alone.

The daemon's configuration (:mod:`daemon.config`) composes these; its generic TOML loader fills them and calls each
one's ``problems()`` for checks across its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AudioConfig",
    "ButtonConfig",
    "DoorContactConfig",
    "GpioConfig",
    "InputConfig",
    "LedConfig",
    "PanelConfig",
    "RelayConfig",
    "TamperConfig",
    "positive",
]


def positive(key: str, value: float, *, zero_ok: bool = False) -> list[str]:
    if value > 0 or (zero_ok and value == 0):
        return []
    return [f"{key}: must be {'zero or more' if zero_ok else 'more than zero'}, got {value}"]


@dataclass(frozen=True)
class GpioConfig:
    # "auto": gpiozero's own choice (lgpio on current Pi OS), or $GPIOZERO_PIN_FACTORY when set.
    # "mock": gpiozero's MockFactory, a simulated panel. Never chosen silently on a Pi.
    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = "auto"


@dataclass(frozen=True)
class ButtonConfig:
    """A doorbell button. Wiring: one leg to the GPIO, the other to ground (internal pull-up)."""

    name: str
    pin: int
    pull_up: bool = True
    min_press_ms: float = 50.0  # contact must be held this long: rejects noise on long cable runs
    holdoff_ms: float = 1000.0  # at most one press per button per hold-off

    def problems(self) -> list[str]:
        out = positive("min_press_ms", self.min_press_ms, zero_ok=True)
        out += positive("holdoff_ms", self.holdoff_ms, zero_ok=True)
        if not self.name.strip():
            out.append("name: must not be empty")
        return out


@dataclass(frozen=True)
class RelayConfig:
    """Door-lock relay (fail-secure: de-energized unless pulsing)."""

    pin: int = 27
    active_high: bool = True
    pulse_seconds: float = 3.0

    def problems(self) -> list[str]:
        return positive("pulse_seconds", self.pulse_seconds)


@dataclass(frozen=True)
class InputConfig:
    """A contact input such as the exit (request-to-exit) button. One leg to GPIO, one to ground."""

    pin: int
    pull_up: bool = True
    min_press_ms: float = 50.0


@dataclass(frozen=True)
class DoorContactConfig:
    pin: int
    pull_up: bool = True
    open_when_active: bool = True  # contact closes to ground (active) when the door opens
    held_open_seconds: float = 60.0

    def problems(self) -> list[str]:
        return positive("held_open_seconds", self.held_open_seconds)


@dataclass(frozen=True)
class TamperConfig:
    pin: int
    pull_up: bool = True
    block_seconds: float = 0.0  # relay blocked this long after tamper (0: never blocked)
    # True: the switch closes to ground (active) on tamper. False: a normally-closed loop that opens on
    # tamper, the fail-safe wiring (a cut wire also reads as tamper).
    tampered_when_active: bool = True

    def problems(self) -> list[str]:
        return positive("block_seconds", self.block_seconds, zero_ok=True)


@dataclass(frozen=True)
class LedConfig:
    """Status LED. Wiring: GPIO -> resistor -> LED anode; cathode to ground."""

    pin: int
    active_high: bool = True


@dataclass(frozen=True)
class AudioConfig:
    output_device: str = "default"  # PortAudio device name (substring match); "default" is ALSA default
    input_device: str = "default"
    volume: float = 1.0
    frames_per_buffer: int = 256  # a stop takes effect within one buffer

    def problems(self) -> list[str]:
        out = [] if 0.0 <= self.volume <= 2.0 else [f"volume: {self.volume} out of range 0.0..2.0"]
        if not 32 <= self.frames_per_buffer <= 8192:
            out.append(f"frames_per_buffer: {self.frames_per_buffer} out of range 32..8192")
        return out


@dataclass(frozen=True)
class PanelConfig:
    """Everything the panel's devices need, composed by the daemon's configuration (``Config.panel``)."""

    buttons: tuple[ButtonConfig, ...] = ()
    relay: RelayConfig = field(default_factory=RelayConfig)
    exit_button: InputConfig | None = None
    door_contact: DoorContactConfig | None = None
    tamper: TamperConfig | None = None
    leds: dict[str, LedConfig] = field(default_factory=dict)  # "status", "fault"
    audio: AudioConfig = field(default_factory=AudioConfig)
