"""What happens to a visit, as the state machine sees it. Legs are indexes, never SIP handles."""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.flow.vocabulary import Prompt, Timer
from daemon.sip.types import DtmfMethod

__all__ = [
    "DoorRefused",
    "DoorUnlocked",
    "Dtmf",
    "FlowEvent",
    "LegAnswered",
    "LegEnded",
    "LegRinging",
    "PromptDone",
    "SecondPress",
    "Start",
    "TimerFired",
]


@dataclass(frozen=True)
class Start:
    sip_ready: bool  # False when registration is known to be down: "out of service" at once


@dataclass(frozen=True)
class LegRinging:
    leg: int


@dataclass(frozen=True)
class LegAnswered:
    leg: int


@dataclass(frozen=True)
class LegEnded:
    leg: int
    code: int  # final SIP status; 0 when the call could not even be placed
    reason: str = ""
    # True when the INVITE never left this panel (the engine refused the dial: call slots full, a URI pjsip
    # cannot route). Such a leg reached nobody, and is not "nobody answered".
    local: bool = False


@dataclass(frozen=True)
class Dtmf:
    leg: int
    digit: str = field(repr=False)  # a typed digit never reaches a log line, not even a debug repr
    method: DtmfMethod
    at: float  # monotonic seconds, for lockout windows


@dataclass(frozen=True)
class DoorUnlocked:
    """The relay energized for the code just accepted (the runner's answer to ``PulseDoor``)."""

    door: str = ""  # the door's name, as the panel knows it ("main" on a one-door panel)


@dataclass(frozen=True)
class DoorRefused:
    """The relay did NOT energize for the code just accepted: the door stayed locked."""

    reason: str  # "relay blocked by tamper", "relay fault: ..."


@dataclass(frozen=True)
class TimerFired:
    name: Timer


@dataclass(frozen=True)
class SecondPress:
    pass


@dataclass(frozen=True)
class PromptDone:
    name: Prompt


FlowEvent = (
    Start
    | LegRinging
    | LegAnswered
    | LegEnded
    | Dtmf
    | DoorUnlocked
    | DoorRefused
    | TimerFired
    | SecondPress
    | PromptDone
)
