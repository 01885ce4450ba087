"""What the visit state machine asks the runner to do. Frozen, comparable, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.flow.vocabulary import LedPattern, LogName, Outcome, Prompt, Timer

__all__ = [
    "CancelTimer",
    "Command",
    "ConnectAudio",
    "Dial",
    "Finish",
    "Hangup",
    "Log",
    "PlayPrompt",
    "PlayToCall",
    "PulseDoor",
    "ShowLeds",
    "StartTimer",
    "StopPrompt",
]


@dataclass(frozen=True)
class Dial:
    leg: int
    uri: str


@dataclass(frozen=True)
class Hangup:
    leg: int


@dataclass(frozen=True)
class PlayPrompt:
    """Play a prompt on the panel's speaker (to the visitor), replacing any prompt playing."""

    name: Prompt


@dataclass(frozen=True)
class StopPrompt:
    pass


@dataclass(frozen=True)
class PlayToCall:
    """Play a prompt into an answered call (to the resident)."""

    leg: int
    name: Prompt


@dataclass(frozen=True)
class ConnectAudio:
    """Talk mode: connect the call to the panel's speaker and microphone."""

    leg: int


@dataclass(frozen=True)
class PulseDoor:
    """Energize a door's relay. The runner answers at once with ``DoorUnlocked`` or ``DoorRefused``."""

    door: str = ""  # a [[doors]] name; "": the panel's first door (what a plain ``codes`` list opens)


@dataclass(frozen=True)
class StartTimer:
    """(Re)start the named timer; when it fires the runner feeds ``TimerFired(name)``."""

    name: Timer
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    name: Timer


@dataclass(frozen=True)
class Log:
    """One per-visit event line (``NAME | {...}``)."""

    event: LogName
    target: str
    text: str


@dataclass(frozen=True)
class ShowLeds:
    pattern: LedPattern


@dataclass(frozen=True)
class Finish:
    """The visit is over: tear everything down, play ``farewell`` (if any) and record ``outcome``."""

    outcome: Outcome
    farewell: Prompt | None
    detail: str


Command = (
    Dial
    | Hangup
    | PlayPrompt
    | StopPrompt
    | PlayToCall
    | ConnectAudio
    | PulseDoor
    | StartTimer
    | CancelTimer
    | Log
    | ShowLeds
    | Finish
)
