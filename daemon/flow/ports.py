"""What the visit runner needs from the rest of the daemon, as small protocols.

The runner depends on these, never on pjsua2, gpiozero or pyaudio; the app passes adapters over the real
engine and panel (:mod:`daemon.visit_adapters`), tests pass fakes through the constructor.

A port that can fail says so in its return type: the failure comes back as a value (``SipError``,
``AudioError``, a refused :class:`DoorResult`) that mypy makes the runner look at, instead of an exception
the runner might forget to catch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from daemon.errors import AudioError, SipError
from daemon.flow.keypad import Tone
from daemon.flow.vocabulary import LedPattern, Prompt
from daemon.sip.types import CallHandle

__all__ = [
    "CallPort",
    "DoorPort",
    "DoorResult",
    "LedPort",
    "PromptPort",
    "SpeakerPort",
    "TonePort",
    "VisitLogPort",
    "VisitPorts",
]


class CallPort(Protocol):
    """SIP calls, by handle. Every failure is returned (``CallGoneError`` when the call already ended)."""

    async def dial(self, uri: str) -> CallHandle | SipError:
        """Place a call; a SipError means the INVITE never left (a local failure, not a SIP status)."""

    async def hangup(self, handle: CallHandle) -> SipError | None: ...
    async def play(self, handle: CallHandle, wav: Path) -> SipError | None: ...
    async def connect_audio(self, handle: CallHandle) -> SipError | None:
        """Connect the call to the panel's speaker and microphone for the rest of the call."""


class SpeakerPort(Protocol):
    async def play_prompt(self, name: Prompt) -> AudioError | None:
        """Play the named prompt to the end; cancelling the caller stops the sound within one buffer."""


class TonePort(Protocol):
    async def play_tone(self, tone: Tone) -> AudioError | None:
        """A key's short feedback tone (from memory). Returns at once, unplayed, while the speaker is busy with a
        prompt or a call: a click must never delay what the visitor is hearing."""


@dataclass(frozen=True)
class DoorResult:
    opened: bool  # True only when the relay really energized
    reason: str = ""  # why not: "relay blocked by tamper", "relay fault: ...", "unknown door ..."
    # The door's name (the first door's when asked for ""): what it says, not part of whether it opened.
    door: str = field(default="", compare=False)


class DoorPort(Protocol):
    def open(self, door: str = "") -> DoorResult:
        """Pulse door ``door``'s relay ("": the first door); a pulse already under way is extended, never
        stacked. Another door's relay, or its fault, has no part in it."""

    def release(self) -> None:
        """De-energize every door's relay at once (fail-secure error path). Never fails."""


class LedPort(Protocol):
    def show(self, pattern: LedPattern) -> None:
        """Never fails: an LED that cannot be driven is logged by hw/, the visit goes on."""


class PromptPort(Protocol):
    def call_wav(self, name: Prompt) -> Path:
        """The prompt as a WAV file at the call's rate (pjsua2 plays files into calls). Every prompt is
        prepared before the daemon is ready, so this cannot fail."""


class VisitLogPort(Protocol):
    def event(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> None: ...


@dataclass(frozen=True)
class VisitPorts:
    """Everything one visit acts on. A visit keeps the ports it started with; a reload gives the router new
    ones (a new prompt set) for the next visit."""

    calls: CallPort
    speaker: SpeakerPort
    door: DoorPort
    leds: LedPort
    prompts: PromptPort
    tones: TonePort | None = None  # key feedback; None on a panel without a keypad (and in flow tests)
