"""What the visit runner needs from the rest of the daemon, as small protocols.

The runner depends on these, never on pjsua2, gpiozero or pyaudio; the app passes adapters over the real
engine and panel, and tests may pass the same adapters or fakes through the constructor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Protocol

__all__ = ["CallPort", "DoorPort", "LedPort", "PromptPort", "SpeakerPort", "VisitLogPort"]


class CallPort(Protocol):
    """SIP calls, by opaque handle. Raises :class:`~daemon.errors.SipError` (``CallGoneError`` when ended)."""

    async def dial(self, uri: str) -> Hashable: ...
    async def hangup(self, handle: Hashable) -> None: ...
    async def play(self, handle: Hashable, wav: Path) -> None: ...
    async def connect_audio(self, handle: Hashable) -> Callable[[], Awaitable[object]] | None:
        """Connect the call to the panel's speaker and microphone. Returns the task that carries the audio
        for the rest of the call (the runner runs it in the visit's task group), or None if none is needed."""


class SpeakerPort(Protocol):
    async def play_prompt(self, name: str) -> None:
        """Play the named prompt to the end; cancelling the caller stops the sound within one buffer."""


class DoorPort(Protocol):
    def open(self) -> None:
        """Pulse the door relay (a pulse already under way is extended, never stacked)."""

    def release(self) -> None:
        """De-energize at once (fail-secure error path)."""


class LedPort(Protocol):
    def show(self, pattern: str) -> None: ...


class PromptPort(Protocol):
    def call_wav(self, name: str) -> Path:
        """The prompt as a WAV file at the call's rate (pjsua2 plays files into calls)."""


class VisitLogPort(Protocol):
    def event(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> None: ...
