"""What happens to a visit, as the state machine sees it. Legs are indexes, never SIP handles."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
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


@dataclass(frozen=True)
class Dtmf:
    leg: int
    digit: str
    method: str  # "rfc2833" or "info"
    at: float  # monotonic seconds, for lockout windows


@dataclass(frozen=True)
class TimerFired:
    name: str


@dataclass(frozen=True)
class SecondPress:
    pass


@dataclass(frozen=True)
class PromptDone:
    name: str


FlowEvent = Start | LegRinging | LegAnswered | LegEnded | Dtmf | TimerFired | SecondPress | PromptDone
