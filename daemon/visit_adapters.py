"""Adapters between the visit flow and the rest of the daemon: the runner's ports over the real panel,
SIP engine and prepared prompts, and a finished visit as a history row.

Each adapter translates its library's failures into the port's typed result at this boundary: hw/'s
errors, the engine's :class:`~daemon.errors.SipError`, a relay that refused to energize.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import door_open_prompt
from daemon.errors import AudioError, SipError
from daemon.flow.keypad import Tone
from daemon.flow.ports import DoorResult
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt
from daemon.history import VisitRecord
from daemon.speaker_route import SpeakerRoute
from hw.errors import HwError
from hw.leds import LedState
from hw.settings import MAIN_DOOR
from hw.speaker import PcmFormat, tone

if TYPE_CHECKING:
    from daemon.flow.router import VisitRequest
    from daemon.flow.runner import VisitResult
    from daemon.prompts import PromptSet
    from daemon.sip import CallHandle, SipEngine
    from hw.panel import Panel
    from hw.relay import Relay

__all__ = [
    "IN_PROGRESS",
    "PanelPorts",
    "SipCalls",
    "open_record",
    "open_relay",
    "visit_progress_record",
    "visit_record",
    "visit_started_record",
]

log = logging.getLogger(__name__)

IN_PROGRESS = "in_progress"  # history's outcome for a visit begun and not yet recorded as ended


def open_relay(relay: Relay | None, door: str = "") -> DoorResult:
    """Pulse a door's relay and say whether it really energized. Fail-secure: any doubt is "not opened"."""
    if relay is None:
        return DoorResult(False, f"unknown door {door!r}", door)
    try:
        opened = relay.open()
    except HwError as exc:  # its run() task is not running, or the pin cannot be driven
        log.error("relay fault (door %s): %s", relay.door, exc)
        return DoorResult(False, f"relay fault: {exc}", relay.door)
    if not opened:
        return DoorResult(False, "relay blocked by tamper", relay.door)
    return DoorResult(True, door=relay.door)


class PanelPorts:
    """The runner's speaker, door, LEDs and prompts, over the panel and ONE prepared prompt set.

    A reload makes a new one over the new prompt set (the router gives it to the next visit), so what a
    visit plays is always the set it started with. What it plays goes through ``route`` (shared by every
    PanelPorts and by :class:`SipCalls`): the one place deciding between PortAudio and a call's conference."""

    def __init__(self, panel: Panel, prompts: PromptSet, route: SpeakerRoute | None = None) -> None:
        self._panel = panel
        self.prompts = prompts
        self.route = route or SpeakerRoute(panel.speaker)  # None: PortAudio plays everything
        self._opened = ""  # the door last opened through these ports (see _named_door)
        # Key feedback, made once in memory at the prompts' own rate (the card is already open at that rate): a
        # short high click for a key taken, a longer low tone for a key refused.
        rate = prompts.speaker_pcm(Prompt.WAITING).rate
        self.tones = {
            Tone.CLICK: tone(2400, 0.035, rate, level=0.25),
            Tone.ERROR: tone(440, 0.25, rate, level=0.25),
        }

    async def play_tone(self, name: Tone) -> AudioError | None:
        pcm, fmt = self.tones[name]
        return await self.route.play_tone(pcm, fmt)

    async def play_prompt(self, name: Prompt) -> AudioError | None:
        # From memory for PortAudio: a press must not wait for a file read, and the read must not block the loop.
        # pjsua2's player (a prompt during a call) reads the same audio from its file on the owner thread.
        named = self._named_door(name)
        pcm = self.prompts.speaker_pcm(named)
        fmt = PcmFormat(pcm.rate, pcm.channels, pcm.sample_width)
        return await self.route.play_prompt(pcm.data, fmt, self.prompts.speaker_wav(named))

    def _named_door(self, name: Prompt) -> str:
        """ "door_open" becomes the opened door's own sentence when [prompts.doors] has one ("portão social
        aberto"). The door is the one last opened through these ports: the machine and the PIN desk both ask
        for DOOR_OPEN right after the relay answered."""
        door_prompt = door_open_prompt(self._opened)
        return door_prompt if name is Prompt.DOOR_OPEN and door_prompt in self.prompts.names else name

    def open(self, door: str = "") -> DoorResult:
        result = open_relay(self._panel.relay_for(door), door)
        if result.opened:
            self._opened = result.door
        return result

    def release(self) -> None:
        self._panel.release_all()

    def show(self, pattern: LedPattern) -> None:
        self._panel.show(LedState(pattern.value))

    def call_wav(self, name: Prompt) -> Path:
        return self.prompts.call_wav(name)


class SipCalls:
    """The runner's :class:`~daemon.flow.ports.CallPort` over the SIP engine. ``route``: the speaker's route,
    which hands the card to a call's audio on a sound device (None: connected at once)."""

    def __init__(self, engine: SipEngine, route: SpeakerRoute | None = None) -> None:
        self._engine = engine
        self._route = route

    async def dial(self, uri: str) -> CallHandle | SipError:
        try:
            return await self._engine.dial(uri)
        except SipError as exc:
            return exc

    async def hangup(self, handle: CallHandle) -> SipError | None:
        try:
            await self._engine.hangup(handle)
        except SipError as exc:
            return exc
        return None

    async def play(self, handle: CallHandle, wav: Path) -> SipError | None:
        try:
            await self._engine.play(handle, str(wav))
        except SipError as exc:
            return exc
        return None

    async def connect_audio(self, handle: CallHandle) -> SipError | None:
        if not self._engine.has_sound_device:
            return None  # the null device: the call still carries RTP and DTMF (the app warned at start)
        try:  # pjmedia drives the card itself, once PortAudio has let go of it
            connect = partial(self._engine.connect_sound_device, handle)
            await (connect() if self._route is None else self._route.hand_over_to_talk(connect))
        except SipError as exc:
            return exc
        return None


def _wall(t: float) -> datetime:
    """A monotonic time as wall-clock time (one offset, taken now)."""
    return datetime.fromtimestamp(t + time.time() - time.monotonic(), tz=UTC)


def visit_started_record(request: VisitRequest) -> VisitRecord:
    """The history row written when a visit starts (``History.begin``), so a crash leaves a trace."""
    return VisitRecord(
        visit=request.visit,
        apartment=request.apartment.name,
        button=request.button,
        started_at=_wall(request.pressed_at),
        outcome=IN_PROGRESS,
        extra={"inbound": request.inbound_handle is not None},
    )


def visit_progress_record(result: VisitResult, request: VisitRequest) -> VisitRecord:
    """The visit's row while it runs (``History.begin`` again): who answered, whether the door opened, so far."""
    return dataclasses.replace(
        visit_record(result, request),
        outcome=IN_PROGRESS,
        ended_at=None,
        call_seconds=None,
        duration_seconds=None,
        failure="",
    )


def _door_extra(door: str) -> dict[str, str]:
    # A one-door panel's rows stay as they always were: its door ("main") is the only one there is.
    return {"door": door} if door and door != MAIN_DOOR else {}


def visit_record(result: VisitResult, request: VisitRequest) -> VisitRecord:
    """The history row for a finished visit. Monotonic times become wall-clock via one offset."""
    offset = time.time() - time.monotonic()

    def wall(t: float) -> datetime:
        return datetime.fromtimestamp(t + offset, tz=UTC)

    answered = result.answered_at
    opened = result.door_opened_at
    ended = result.ended or time.monotonic()
    return VisitRecord(
        visit=result.visit,
        apartment=request.apartment.name,
        button=request.button,
        started_at=wall(request.pressed_at),
        outcome=result.outcome.value,
        answered_by=result.answered_by,
        answered_at=None if answered is None else wall(answered),
        door_opened=opened is not None,
        opened_by=result.answered_by if opened is not None else "",
        open_method="dtmf" if opened is not None else "",
        ended_at=wall(ended),
        ring_seconds=None if answered is None else round(answered - request.pressed_at, 3),
        call_seconds=None if answered is None else round(ended - answered, 3),
        duration_seconds=round(ended - request.pressed_at, 3),
        failure="" if result.outcome in (Outcome.DOOR_OPENED, Outcome.NOT_OPENED) else result.detail,
        extra={"inbound": request.inbound_handle is not None}
        | _door_extra(result.state.door if opened is not None else ""),
    )


def open_record(visit: str, door: str, who: str, how: str) -> VisitRecord:
    """The history row of a door opened outside a visit: ``who`` (a PIN's label, "exit button", the control
    socket's peer, "mqtt"), which door, and ``how`` (pin, exit, control, mqtt). Never a PIN."""
    now = datetime.now(UTC)
    return VisitRecord(
        visit=visit,
        apartment="",
        button=how,
        started_at=now,
        outcome=Outcome.DOOR_OPENED.value,
        door_opened=True,
        opened_by=who,
        open_method=how,
        ended_at=now,
        duration_seconds=0.0,
        extra={"door": door},
    )
