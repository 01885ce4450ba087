"""The panel's device settings: hw/'s own frozen dataclasses, so hw/ can be read, tested and reused alone.

The daemon's configuration (:mod:`daemon.config`) composes these; its generic TOML loader fills them and calls each
one's ``problems()`` for checks across its own fields.

Every number carries its accepted range next to it (``Annotated[float, Range(...)]``): the loader refuses NaN,
infinities and anything outside the range, naming the key, and refuses to load a dataclass whose numeric field
declares no range at all, so a new field cannot forget one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

__all__ = [
    "GPIO_PIN",
    "LAYOUT_3X4",
    "LAYOUT_4X4",
    "MAIN_DOOR",
    "AudioConfig",
    "ButtonConfig",
    "DoorConfig",
    "DoorContactConfig",
    "EchoCanceller",
    "GpioConfig",
    "InputConfig",
    "JitterDiscard",
    "KeypadConfig",
    "LedConfig",
    "MatrixKeypadConfig",
    "PanelConfig",
    "Range",
    "RelayConfig",
    "TamperConfig",
    "range_problems",
]


@dataclass(frozen=True)
class Range:
    """The finite, inclusive range a numeric setting must lie in; ``unit`` and ``note`` only explain it."""

    low: float
    high: float
    unit: str = ""
    note: str = ""  # what an edge value means, e.g. "0: never"

    def __post_init__(self) -> None:
        if not (0 <= self.low <= self.high < float("inf")):
            raise ValueError(f"Range({self.low}, {self.high}): must be finite with 0 <= low <= high")

    def describe(self) -> str:
        text = f"{self.low:g}..{self.high:g}" + (f" {self.unit}" if self.unit else "")
        return f"{text} ({self.note})" if self.note else text


def range_problems(settings: object) -> list[str]:
    """The fields of one settings dataclass that lie outside their declared :class:`Range`, or are not finite.

    For instances built in code: the TOML loader refuses such values before it builds anything.
    """
    hints = get_type_hints(type(settings), include_extras=True)
    out: list[str] = []
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        hint = hints[f.name]
        bounds = next((e for e in get_args(hint)[1:] if isinstance(e, Range)), None)
        if get_origin(hint) is not Annotated or bounds is None:
            continue
        value = getattr(settings, f.name)
        if not math.isfinite(value) or not bounds.low <= value <= bounds.high:
            out.append(f"{f.name}: {value} out of range {bounds.describe()}")
    return out


# BCM numbers on the Pi's 40-pin header.
GPIO_PIN = Range(0, 27, note="a BCM GPIO number on the header")


@dataclass(frozen=True)
class GpioConfig:
    # "auto": gpiozero's own choice (lgpio on current Pi OS), or $GPIOZERO_PIN_FACTORY when set.
    # "mock": gpiozero's MockFactory, a simulated panel. Never chosen silently on a Pi.
    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = "auto"


@dataclass(frozen=True)
class ButtonConfig:
    """A doorbell button. Wiring: one leg to the GPIO, the other to ground (internal pull-up)."""

    name: str
    pin: Annotated[int, GPIO_PIN]
    pull_up: bool = True
    # The contact must be held this long: rejects noise on long cable runs (beyond 2 s nobody holds it).
    min_press_ms: Annotated[float, Range(0, 2000, "ms")] = 50.0
    holdoff_ms: Annotated[float, Range(0, 60_000, "ms")] = 1000.0  # at most one press per button per hold-off

    def problems(self) -> list[str]:
        return range_problems(self) + ([] if self.name.strip() else ["name: must not be empty"])


@dataclass(frozen=True)
class RelayConfig:
    """Door-lock relay (fail-secure: de-energized unless pulsing)."""

    pin: Annotated[int, GPIO_PIN] = 27
    active_high: bool = True
    # Seconds, not days: an open must end on its own. A minute is already a door held by the daemon.
    pulse_seconds: Annotated[float, Range(0.1, 60, "seconds")] = 3.0


@dataclass(frozen=True)
class InputConfig:
    """A contact input such as the exit (request-to-exit) button. One leg to GPIO, one to ground."""

    pin: Annotated[int, GPIO_PIN]
    pull_up: bool = True
    min_press_ms: Annotated[float, Range(0, 2000, "ms")] = 50.0


@dataclass(frozen=True)
class DoorContactConfig:
    pin: Annotated[int, GPIO_PIN]
    pull_up: bool = True
    open_when_active: bool = True  # contact closes to ground (active) when the door opens
    held_open_seconds: Annotated[float, Range(1, 3600, "seconds")] = 60.0


MAIN_DOOR = "main"  # the one door of a panel configured without [[doors]]


@dataclass(frozen=True)
class DoorConfig:
    """One door (``[[doors]]``): its own relay, and optionally its exit button and contact (held-open alarm).

    Each door's relay is fail-secure, extends rather than stacks, and is released on every path, on its own: a
    fault of one door's relay never blocks another's."""

    name: str
    relay: RelayConfig
    exit_button: InputConfig | None = None
    door_contact: DoorContactConfig | None = None

    def problems(self) -> list[str]:
        name = self.name
        if not (name and name.isascii() and all(c.isalnum() or c in "-_" for c in name) and len(name) <= 32):
            return [f"name: {name!r} must be 1 to 32 letters, digits, '-' or '_' (intercomctl open NAME uses it)"]
        return []


@dataclass(frozen=True)
class TamperConfig:
    pin: Annotated[int, GPIO_PIN]
    pull_up: bool = True
    # Relay blocked this long after tamper; a day at most, so a stuck switch cannot lock the door for good.
    block_seconds: Annotated[float, Range(0, 86_400, "seconds", "0: never blocked")] = 0.0
    # True: the switch closes to ground (active) on tamper. False: a normally-closed loop that opens on
    # tamper, the fail-safe wiring (a cut wire also reads as tamper).
    tampered_when_active: bool = True


@dataclass(frozen=True)
class LedConfig:
    """Status LED. Wiring: GPIO -> resistor -> LED anode; cathode to ground."""

    pin: Annotated[int, GPIO_PIN]
    active_high: bool = True


LAYOUT_3X4 = ("123", "456", "789", "*0#")
LAYOUT_4X4 = ("123A", "456B", "789C", "*0#D")


@dataclass(frozen=True)
class MatrixKeypadConfig:
    """A matrix keypad: rows are outputs (driven low at rest), columns inputs with pull-ups."""

    rows: tuple[Annotated[int, GPIO_PIN], ...]
    columns: tuple[Annotated[int, GPIO_PIN], ...]
    layout: tuple[str, ...] = LAYOUT_3X4  # one string per row, one character per column
    # Contacts bounce: a key is read once they have been still this long.
    settle_ms: Annotated[float, Range(1, 200, "ms")] = 20.0
    # A key held longer is reported stuck (jammed, a shorted wire) and ignored until released.
    stuck_seconds: Annotated[float, Range(0.1, 3600, "seconds")] = 10.0

    def problems(self) -> list[str]:
        out = []
        if len(self.layout) != len(self.rows) or any(len(r) != len(self.columns) for r in self.layout):
            out.append(
                f"layout: {len(self.layout)} row(s) for {len(self.rows)} row pin(s) and {len(self.columns)} "
                "column pin(s); one string per row, one character per column"
            )
        keys = "".join(self.layout)
        if len(set(keys)) != len(keys):
            out.append("layout: a key appears twice")
        if set(self.rows) & set(self.columns) or len(set(self.rows + self.columns)) != len(self.rows + self.columns):
            out.append("rows/columns: a GPIO is used twice")
        return out


@dataclass(frozen=True)
class KeypadConfig:
    """``[keypad]``'s wiring: a matrix (``rows`` + ``columns`` + ``layout``) or one GPIO per key (``keys``,
    e.g. ``{"1" = 2, ..., "#" = 26}``, each key to ground). The typing settings are the daemon's (its subclass)."""

    rows: tuple[Annotated[int, GPIO_PIN], ...] = ()
    columns: tuple[Annotated[int, GPIO_PIN], ...] = ()
    layout: tuple[str, ...] = LAYOUT_3X4
    keys: dict[str, Annotated[int, GPIO_PIN]] = field(default_factory=dict)
    settle_ms: Annotated[float, Range(1, 200, "ms")] = 20.0
    stuck_seconds: Annotated[float, Range(0.1, 3600, "seconds")] = 10.0
    # For a keypad of individual buttons: each key's own press filter.
    min_press_ms: Annotated[float, Range(0, 2000, "ms")] = 30.0
    holdoff_ms: Annotated[float, Range(0, 5000, "ms")] = 150.0

    @property
    def matrix(self) -> MatrixKeypadConfig | None:
        if not self.rows:
            return None
        return MatrixKeypadConfig(self.rows, self.columns, self.layout, self.settle_ms, self.stuck_seconds)

    def pins(self) -> list[tuple[str, int]]:
        """Every GPIO the keypad uses, with its key path (the config's one-owner-per-pin check)."""
        out = [(f"keypad.rows[{i}]", pin) for i, pin in enumerate(self.rows)]
        out += [(f"keypad.columns[{i}]", pin) for i, pin in enumerate(self.columns)]
        return out + [(f"keypad.keys.{key}", pin) for key, pin in self.keys.items()]

    def problems(self) -> list[str]:
        matrix = self.matrix
        if matrix is None and not self.keys:
            return ["rows/columns or keys: a keypad is a matrix (rows, columns, layout) or one GPIO per key (keys)"]
        if matrix is not None and self.keys:
            return ["rows/columns and keys: choose one wiring, a matrix or one GPIO per key"]
        if matrix is not None:
            return matrix.problems()
        out = [f"keys.{key}: a key is one character (0-9, *, #, A-D)" for key in self.keys if len(key) != 1]
        pins = list(self.keys.values())
        if len(set(pins)) != len(pins):
            out.append("keys: a GPIO is used by two keys")
        return out


EchoCanceller = Literal["speex", "webrtc", "aec3"]
# pjmedia's jitter buffer shrinking its delay (pjmedia_jb_discard_algo): "progressive" is pjmedia's default
JitterDiscard = Literal["none", "static", "progressive"]


@dataclass(frozen=True)
class AudioConfig:
    output_device: str = "default"  # PortAudio device name (substring match); "default" is ALSA default
    input_device: str = "default"
    volume: Annotated[float, Range(0, 2, note="1.0: unchanged")] = 1.0
    # A talk call's levels on the card, applied in pjsua2's conference (after the echo canceller, so a gain here
    # does not change what the canceller sees): the resident's voice at the gate, the visitor's towards the resident.
    talk_volume: Annotated[float, Range(0, 4, note="the resident's voice at the gate's speaker; 1.0: unchanged")] = 1.0
    mic_gain: Annotated[float, Range(0, 4, note="the visitor's microphone towards the resident; 1.0: unchanged")] = 1.0
    frames_per_buffer: Annotated[int, Range(32, 8192, "frames")] = 256  # a stop takes effect within one buffer
    # Talk mode on pjmedia's sound device (a source build; docs/audio.md has the measurements behind each default).
    echo_cancellation: bool = True
    echo_canceller: EchoCanceller = "speex"  # on speech here: speex ~44 dB ERLE, webrtc/aec3 under 11 dB
    echo_tail_ms: Annotated[int, Range(20, 500, "ms", note="echo delay beyond the canceller's reference buffer")] = 150
    sound_latency_ms: Annotated[int, Range(20, 500, "ms", note="pjmedia's playback buffering on the card")] = 40
    # The capture buffer only bounds how long pjmedia's capture thread may be late before the card overruns (audio
    # lost): it reads each 20 ms period as it comes, so a larger one adds no delay (docs/audio.md, "A 10-minute call").
    capture_latency_ms: Annotated[int, Range(20, 500, "ms", note="pjmedia's capture buffering on the card")] = 40
    # Every canceller's preprocessor (Speex's too on our build: packaging/pjsua2/config_site.h). Speex's denoiser
    # also suppresses its residual echo; its AGC sent the visitor ~10 dB lower (docs/audio.md).
    noise_suppression: bool = True
    gain_control: bool = False
    half_duplex: bool = False  # the fallback when acoustics defeat the canceller: pjmedia's echo suppressor
    # The call's receive jitter buffer: how it sheds delay it no longer needs (docs/audio.md, "The jitter buffer").
    jitter_discard: JitterDiscard = "static"
    # pjmedia's VAD: sends nothing while the microphone is quiet (it held the panel's RTP for 0.4-1.6 s at every
    # call's start, and the resident heard dead air, not the street). Off: a talk call's audio flows continuously.
    silence_suppression: bool = False


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
    keypad: KeypadConfig | None = None
    doors: tuple[DoorConfig, ...] = ()  # [[doors]]; empty: one door, "main", from relay/exit_button/door_contact

    @property
    def door_list(self) -> tuple[DoorConfig, ...]:
        """Every door, the first being the one a plain ``codes`` list and ``intercomctl open`` open."""
        return self.doors or (DoorConfig(MAIN_DOOR, self.relay, self.exit_button, self.door_contact),)
