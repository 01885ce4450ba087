"""Events the panel's devices deliver through ``post``: small frozen dataclasses, one per fact.

Every event carries ``at``, the :func:`time.monotonic` of the *qualifying edge*: for a doorbell press
that is the moment the contact closed (not the moment the minimum hold ran out), so the visit log and
latency measurements start from what the visitor did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ButtonPressed",
    "DoorClosed",
    "DoorHeldOpen",
    "DoorOpened",
    "EventSink",
    "ExitRequested",
    "HwEvent",
    "KeyPressed",
    "KeyStuck",
    "RelayChanged",
    "TamperCleared",
    "TamperTriggered",
]


@dataclass(frozen=True)
class ButtonPressed:
    """A doorbell button was held for at least its ``min_press_ms`` (once per ``holdoff_ms``)."""

    button: str
    at: float


@dataclass(frozen=True)
class ExitRequested:
    """The request-to-exit button was pressed; the panel has already pulsed the relay itself."""

    at: float
    opened: bool = True  # False when the relay was blocked (tamper) and the door stayed locked
    door: str = "main"  # which door ([[doors]] name; "main" on a one-door panel)


@dataclass(frozen=True)
class DoorOpened:
    at: float
    door: str = "main"  # which door ([[doors]] name; "main" on a one-door panel)


@dataclass(frozen=True)
class DoorClosed:
    at: float
    door: str = "main"  # which door ([[doors]] name; "main" on a one-door panel)


@dataclass(frozen=True)
class DoorHeldOpen:
    """The door has stayed open ``held_open_seconds`` since ``opened_at``."""

    at: float
    opened_at: float
    door: str = "main"  # which door ([[doors]] name; "main" on a one-door panel)


@dataclass(frozen=True)
class TamperTriggered:
    at: float


@dataclass(frozen=True)
class TamperCleared:
    at: float


@dataclass(frozen=True)
class RelayChanged:
    """The door-lock relay was energized (door unlocked) or released (locked)."""

    energized: bool
    at: float
    door: str = "main"  # which door ([[doors]] name; "main" on a one-door panel)


@dataclass(frozen=True)
class KeyPressed:
    """One key of the keypad, once per press (holding it never repeats). ``key`` is one character of the layout:
    a digit, ``*``, ``#`` or a letter key. It may be a digit of an access PIN: the daemon never logs it."""

    key: str
    at: float  # monotonic time of the edge that started the press

    def __repr__(self) -> str:  # a PIN's digits stay out of tracebacks and debug logs
        return f"KeyPressed(key='?', at={self.at!r})"


@dataclass(frozen=True)
class KeyStuck:
    """A key held longer than the keypad's ``stuck_seconds`` (jammed, or a shorted wire): ignored until released."""

    key: str
    at: float  # when it was found stuck


HwEvent = (
    ButtonPressed
    | KeyPressed
    | KeyStuck
    | ExitRequested
    | DoorOpened
    | DoorClosed
    | DoorHeldOpen
    | TamperTriggered
    | TamperCleared
    | RelayChanged
)


class EventSink(Protocol):
    """The one thing hw/ needs from the daemon: a way to hand an event to its loop, once per event.

    Either it may block its caller until the loop has taken the event (``daemon.bridge.EventChannel.post``): the
    panel then calls it from one thread of its own (:class:`hw._timing.Outbox`), never from the loop, a gpiozero
    callback or the thread timing the relay. Or it only queues the event for the loop and returns at once
    (``daemon.bridge.EventChannel.post_soon``, the daemon's; ``Panel(..., post_never_blocks=True)``): the devices
    then call it directly, from the dispatcher. Either way it must not run the daemon's work there, and hw never
    reaches the loop any other way.
    """

    def __call__(self, event: HwEvent, /) -> None: ...
