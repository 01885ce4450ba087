"""The visit's names, as enums mypy checks: a misspelt timer, LED pattern or outcome is a type error,
not a timer that silently never fires. Prompt names live in :mod:`daemon.prompt_texts` (config uses them)."""

from __future__ import annotations

import enum
from typing import Literal

from daemon.prompt_texts import Prompt

__all__ = ["LedPattern", "LogName", "Outcome", "Prompt", "Timer"]


class Timer(enum.StrEnum):
    RING = "ring"  # the current stage's ring timeout
    DIGITS = "digits"  # a half-typed code is forgotten after a pause
    DEADLINE = "deadline"  # the whole visit's bound
    MAX_CALL = "max_call"
    CALL_WARNING = "call_warning"  # the "call ending" prompt, this long before max_call
    HANGUP_AFTER_OPEN = "hangup_after_open"


class LedPattern(enum.StrEnum):
    """What the status LEDs show; values match :class:`hw.leds.LedState` (the adapter maps one to the other)."""

    IDLE = "idle"
    CALLING = "calling"
    IN_CALL = "in_call"
    DOOR_OPEN = "door_open"
    FAULT = "fault"


class Outcome(enum.StrEnum):
    """How a visit ended: the OUTCOME event's text and history's ``outcome`` column. Every one is produced."""

    DOOR_OPENED = "door_opened"  # the relay energized for the resident's code
    DOOR_REFUSED = "door_refused"  # the right code, but the relay did not energize (tamper block, relay fault)
    NOT_OPENED = "not_opened"  # answered, the call ended without a right code
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    OUT_OF_SERVICE = "out_of_service"  # registration down, or no leg reached the PBX/phone
    DIAL_FAILED = "dial_failed"  # no INVITE could even be sent (local failure: call slots full, bad URI)
    DEADLINE = "deadline"
    CANCELLED = "cancelled"  # cut short by shutdown or `intercomctl hangup`
    ERROR = "error"  # the runner crashed (a bug): the relay was released, every leg hung up


# The visit's own event-log lines (``NAME | {...}`` in events.jsonl and the journal). A Literal rather than
# an enum: the visit log takes any name, and these must match what readers (masking, tests, operators) expect.
LogName = Literal[
    "CALL_START",
    "RINGING",
    "ANSWERED",
    "HANGUP",
    "DIAL_FAILED",
    "NEXT_STAGE",
    "SECOND_PRESS",
    "DTMF",
    "DTMF_IGNORED",
    "CODE_REJECTED",
    "LOCKOUT",
    "DOOR_OPEN",
    "DOOR_OPEN_REFUSED",
    "CALL_WARNING",
]
