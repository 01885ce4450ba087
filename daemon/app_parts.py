"""Adapters between the visit runner's ports and the real panel, SIP engine, prompts and history."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.errors import translate_hw_error
from daemon.history import VisitRecord
from hw.leds import LedState
from hw.speaker import PcmFormat

if TYPE_CHECKING:
    from daemon.flow.runner import VisitResult
    from daemon.prompts import PromptSet
    from daemon.sip import CallHandle, SipEngine
    from daemon.visits import VisitRequest
    from hw.events import HwEvent
    from hw.panel import Panel
    from hw.talk import TalkPump

__all__ = ["PanelPorts", "SipCalls", "hw_event_text", "make_record"]


class PanelPorts:
    """The runner's speaker, door, LEDs and prompts, over the panel and the prepared prompt set."""

    def __init__(self, panel: Panel, prompts: PromptSet) -> None:
        self._panel = panel
        self.prompts = prompts

    async def play_prompt(self, name: str) -> None:
        # From memory: a press must not wait for a file read, and the read must not block the loop.
        pcm = self.prompts.speaker_pcm(name)
        result = await self._panel.speaker.play(pcm.data, PcmFormat(pcm.rate, pcm.channels, pcm.sample_width))
        if result.error is not None:
            raise translate_hw_error(result.error)

    def open(self) -> None:
        self._panel.relay.open()

    def release(self) -> None:
        self._panel.relay.release()

    def show(self, pattern: str) -> None:
        self._panel.show(LedState(pattern))

    def call_wav(self, name: str) -> Path:
        return self.prompts.call_wav(name)


class SipCalls:
    """The runner's :class:`~daemon.flow.ports.CallPort` over the SIP engine."""

    def __init__(self, engine: SipEngine, talk: TalkPump | None = None) -> None:
        self._engine = engine
        self._talk = talk

    async def dial(self, uri: str) -> Hashable:
        return await self._engine.dial(uri)

    async def hangup(self, handle: Hashable) -> None:
        await self._engine.hangup(_handle(handle))

    async def play(self, handle: Hashable, wav: Path) -> None:
        await self._engine.play(_handle(handle), str(wav))

    async def connect_audio(self, handle: Hashable) -> Callable[[], Awaitable[object]] | None:
        if self._engine.has_sound_device:
            await self._engine.connect_sound_device(_handle(handle))  # pjmedia drives the card itself
            return None
        if self._talk is None:
            return None
        # No sound device in this pjsua2 build: the call's frames go through Python to pyaudio.
        bridge = await self._engine.connect_audio_bridge(_handle(handle))
        return partial(self._talk.run, bridge)


def _handle(handle: Hashable) -> CallHandle:
    return handle  # type: ignore[return-value]  # the runner only hands back what dial() returned


def hw_event_text(event: HwEvent) -> str:
    fields = getattr(event, "__dataclass_fields__", {})
    return ", ".join(f"{name}={getattr(event, name)!r}" for name in fields if name != "at")


def make_record(result: VisitResult, request: VisitRequest) -> VisitRecord:
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
        outcome=result.outcome,
        answered_by=result.answered_by,
        answered_at=None if answered is None else wall(answered),
        door_opened=opened is not None,
        opened_by=result.answered_by if opened is not None else "",
        open_method="dtmf" if opened is not None else "",
        ended_at=wall(ended),
        ring_seconds=None if answered is None else round(answered - request.pressed_at, 3),
        call_seconds=None if answered is None else round(ended - answered, 3),
        duration_seconds=round(ended - request.pressed_at, 3),
        failure="" if result.outcome in ("door_opened", "not_opened") else result.detail,
        extra={"inbound": request.inbound_handle is not None},
    )
