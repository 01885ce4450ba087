"""Typing at the keypad, as a pure state machine: ``press(state, key, now)`` and ``expire(state, now)``.

The grammar (the classic condo panel's, with a 3x4 keypad that has no separate call key):

* ``1 0 1`` then CALL (or ``#``): call apartment 101. With ``call_after_idle`` set, stopping typing for that
  long calls too.
* ``#`` on an empty entry, then the PIN, then ``#`` (or CALL): an access PIN. A PIN is never submitted by the
  idle timer: a half-typed PIN is only ever cleared.
* ``*`` erases the whole entry (a visitor who mistyped starts again; one key, one meaning).
* Every key gets feedback (:class:`Feedback`): a click, or an error tone for a key that was refused (too many
  digits, an empty call). An entry left alone for ``idle_timeout`` is cleared.

A visit starts only when a number is complete: the machine emits :class:`CallApartment` and returns to idle.
Which apartment the number names, and whether a PIN is right, is decided by the caller (the directory and
:mod:`daemon.access`), not here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "CALL",
    "CallApartment",
    "CheckPin",
    "Entry",
    "Feedback",
    "KeypadAction",
    "KeypadLimits",
    "KeypadState",
    "Tone",
    "expire",
    "press",
]

CALL = "C"  # the call key, on 4x4 keypads and button panels that have one
KEYS = frozenset("0123456789*#" + CALL)


class Entry(enum.Enum):
    IDLE = "idle"
    NUMBER = "number"  # typing an apartment number
    PIN = "pin"  # typing an access PIN (started with '#')


class Tone(enum.Enum):
    CLICK = "click"  # key accepted
    ERROR = "error"  # key refused: the entry is cleared


@dataclass(frozen=True)
class Feedback:
    tone: Tone
    why: str = ""  # for the log: never the digits typed


@dataclass(frozen=True)
class CallApartment:
    number: str


@dataclass(frozen=True)
class CheckPin:
    pin: str = field(repr=False)  # handed to the PIN book; never logged, not even in a repr


KeypadAction = Feedback | CallApartment | CheckPin


@dataclass(frozen=True)
class KeypadLimits:
    max_number_digits: int = 6
    max_pin_digits: int = 12
    idle_timeout: float = 8.0  # an entry left alone this long is cleared
    call_after_idle: float | None = None  # if set (shorter than idle_timeout), a typed number calls by itself


@dataclass(frozen=True)
class KeypadState:
    entry: Entry = Entry.IDLE
    typed: str = ""
    last_key_at: float = 0.0

    def __repr__(self) -> str:  # the digits stay out of logs and tracebacks
        return f"<KeypadState {self.entry.name} {len(self.typed)} digit(s)>"

    def deadline(self, limits: KeypadLimits) -> float | None:
        """When :func:`expire` must next be called (None while idle)."""
        if self.entry is Entry.IDLE:
            return None
        if self.entry is Entry.NUMBER and self.typed and limits.call_after_idle is not None:
            return self.last_key_at + min(limits.call_after_idle, limits.idle_timeout)
        return self.last_key_at + limits.idle_timeout


Step = tuple[KeypadState, list[KeypadAction]]
_IDLE = KeypadState()


def press(state: KeypadState, key: str, now: float, limits: KeypadLimits) -> Step:
    """One key. Unknown keys are refused with an error tone (a wiring fault must not type for anyone)."""
    if key not in KEYS:
        return _IDLE, [Feedback(Tone.ERROR, "unknown key")]
    # A key after the deadline, before the caller's timer ran: what the deadline meant happens first.
    state, expired = expire(state, now, limits)
    state, actions = _key(state, key, now, limits)
    return state, expired + actions


def _key(state: KeypadState, key: str, now: float, limits: KeypadLimits) -> Step:
    if key == "*":
        return _IDLE, [Feedback(Tone.CLICK, "entry erased")]
    if key in ("#", CALL):
        return _submit(state, key, now)
    limit = limits.max_pin_digits if state.entry is Entry.PIN else limits.max_number_digits
    if len(state.typed) >= limit:
        return _IDLE, [Feedback(Tone.ERROR, "too many digits")]
    entry = Entry.NUMBER if state.entry is Entry.IDLE else state.entry
    return KeypadState(entry, state.typed + key, now), [Feedback(Tone.CLICK)]


def _submit(state: KeypadState, key: str, now: float) -> Step:
    match state.entry:
        case Entry.IDLE if key == "#":
            return KeypadState(Entry.PIN, "", now), [Feedback(Tone.CLICK, "PIN entry")]
        case Entry.IDLE:
            return _IDLE, [Feedback(Tone.ERROR, "call with no number")]
        case Entry.NUMBER:
            return _IDLE, [Feedback(Tone.CLICK), CallApartment(state.typed)]
        case Entry.PIN if state.typed:
            return _IDLE, [Feedback(Tone.CLICK), CheckPin(state.typed)]
        case Entry.PIN:
            return _IDLE, [Feedback(Tone.ERROR, "empty PIN")]
    raise AssertionError(state.entry)  # pragma: no cover - the match is exhaustive


def expire(state: KeypadState, now: float, limits: KeypadLimits) -> Step:
    """Time passing: a number may call by itself (``call_after_idle``); anything else left too long is cleared."""
    deadline = state.deadline(limits)
    if deadline is None or now < deadline:
        return state, []
    if state.entry is Entry.NUMBER and state.typed and limits.call_after_idle is not None:
        return _IDLE, [CallApartment(state.typed)]
    return _IDLE, [Feedback(Tone.ERROR, "entry timed out")]
