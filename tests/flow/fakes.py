"""Fakes for the visit's ports, injected through constructors (no mock.patch)."""

from __future__ import annotations

from pathlib import Path

import anyio

from daemon.errors import AudioError, CallGoneError, SipError
from daemon.flow.ports import DoorResult, VisitPorts
from daemon.flow.vocabulary import LedPattern, Prompt
from daemon.sip.types import CallHandle


def call(n: int, uri: str = "sip:x@h") -> CallHandle:
    return CallHandle(n, n, "outgoing", uri)


class FakeCalls:
    def __init__(self, *, dial_error: SipError | None = None) -> None:
        self.dialed: list[str] = []
        self.hung_up: list[CallHandle] = []
        self.ended: set[CallHandle] = set()
        self.played: list[tuple[CallHandle, Path]] = []
        self.dial_error = dial_error

    async def dial(self, uri: str) -> CallHandle | SipError:
        self.dialed.append(uri)
        if self.dial_error is not None:
            return self.dial_error
        return call(len(self.dialed), uri)

    async def hangup(self, handle: CallHandle) -> SipError | None:
        if handle in self.ended:
            return CallGoneError("gone")
        self.hung_up.append(handle)
        return None

    async def play(self, handle: CallHandle, wav: Path) -> SipError | None:
        self.played.append((handle, wav))
        return None

    async def connect_audio(self, handle: CallHandle) -> SipError | None:
        return None


class FakeSpeaker:
    """Plays for 50 ms per prompt; ``played_by`` says which speaker (which prompt set) played it."""

    def __init__(self, name: str = "speaker") -> None:
        self.name = name
        self.played: list[Prompt] = []
        self.stopped = 0
        self.started = anyio.Event()

    async def play_prompt(self, name: Prompt) -> AudioError | None:
        self.played.append(name)
        self.started.set()
        try:
            await anyio.sleep(0.05)
        except anyio.get_cancelled_exc_class():
            self.stopped += 1
            raise
        return None


class FakeDoor:
    def __init__(self, refuse: str = "") -> None:
        self.opens = 0
        self.doors: list[str] = []  # which door each open asked for ("": the first)
        self.releases = 0
        self.refuse = refuse  # a reason: the relay does not energize

    def open(self, door: str = "") -> DoorResult:
        self.opens += 1
        self.doors.append(door)
        return DoorResult(False, self.refuse) if self.refuse else DoorResult(True, door=door or "main")

    def release(self) -> None:
        self.releases += 1


class Recorder:
    """The visit log, LEDs and call prompts in one: everything the visit said, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.visits: list[str] = []
        self.leds: list[LedPattern] = []
        self.changed = anyio.Event()

    def event(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> None:
        self.events.append((name, text))
        self.visits.append(visit)
        self.changed.set()
        self.changed = anyio.Event()

    def show(self, pattern: LedPattern) -> None:
        self.leds.append(pattern)

    def call_wav(self, name: Prompt) -> Path:
        return Path(name)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def until(self, name: str, count: int = 1, timeout: float = 5) -> None:
        """Wait until ``name`` was logged ``count`` times."""
        with anyio.fail_after(timeout):
            while self.names().count(name) < count:
                await self.changed.wait()


def ports(
    calls: FakeCalls | None = None,
    speaker: FakeSpeaker | None = None,
    door: FakeDoor | None = None,
    rec: Recorder | None = None,
) -> VisitPorts:
    rec = rec or Recorder()
    return VisitPorts(calls or FakeCalls(), speaker or FakeSpeaker(), door or FakeDoor(), rec, rec)
