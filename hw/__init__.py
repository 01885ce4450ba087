"""The panel's hardware: gpiozero devices, the door relay, status LEDs and the prompt speaker.

Nothing here imports the daemon: settings are :mod:`hw.settings`, errors :mod:`hw.errors`; events leave
through the :class:`~hw.events.EventSink` given to the panel (``daemon.bridge.EventChannel.post``), once per event.
"""

from hw.events import (
    ButtonPressed,
    DoorClosed,
    DoorHeldOpen,
    DoorOpened,
    EventSink,
    ExitRequested,
    HwEvent,
    KeyPressed,
    KeyStuck,
    RelayChanged,
    TamperCleared,
    TamperTriggered,
)
from hw.inputs import DoorbellButton, DoorContact, ExitButton, TamperSwitch
from hw.keypad import ButtonKeypad, MatrixKeypad
from hw.leds import LedState, StatusLeds
from hw.panel import Panel
from hw.pcm import PcmFormat, read_wav
from hw.pins import make_pin_factory
from hw.relay import Relay
from hw.selftest import CheckResult, run_selftest
from hw.speaker import PlayResult, Speaker, SpeakerHealth

__all__ = [
    "ButtonKeypad",
    "ButtonPressed",
    "CheckResult",
    "DoorClosed",
    "DoorContact",
    "DoorHeldOpen",
    "DoorOpened",
    "DoorbellButton",
    "EventSink",
    "ExitButton",
    "ExitRequested",
    "HwEvent",
    "KeyPressed",
    "KeyStuck",
    "LedState",
    "MatrixKeypad",
    "Panel",
    "PcmFormat",
    "PlayResult",
    "Relay",
    "RelayChanged",
    "Speaker",
    "SpeakerHealth",
    "StatusLeds",
    "TamperCleared",
    "TamperSwitch",
    "TamperTriggered",
    "make_pin_factory",
    "read_wav",
    "run_selftest",
]
