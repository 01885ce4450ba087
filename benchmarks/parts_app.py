"""A minimal visit wired from the real parts, used by :mod:`benchmarks.app_bench` when ``daemon.app`` cannot
start (it is a draft that other work is still landing in). NOT the product's wiring.

Real parts: ``hw.panel.Panel`` (gpiozero buttons with the press filter, relay, speaker via PortAudio),
``daemon.sip.SipEngine`` (owner thread + LoopBridge), ``daemon.prompts.PromptCache``. Missing compared
to the app: the visit state machine and runner (``daemon.flow``), history, visit log and control socket.
A press plays the "waiting" prompt while dialling the resident; a DTMF digit that is a code pulses the relay
and hangs up, as the flow does with ``hangup_after_open_seconds = 0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from daemon.bridge import EventChannel, LoopBridge
from daemon.config import Config
from daemon.errors import SipError
from daemon.prompts import PromptCache
from daemon.sip import CallEnded, DtmfReceived, SipEngine
from hw import events as hw_events
from hw.panel import Panel

__all__ = ["PartsApp", "running_parts"]


class PartsApp:
    def __init__(self, config: Config, panel: Panel, engine: SipEngine, prompt_wav: Path) -> None:
        self.config, self.panel, self.engine, self.prompt_wav = config, panel, engine, prompt_wav
        self.active = 0
        self.completed = 0
        self.calls: set[Any] = set()

    def idle(self) -> bool:
        return self.active == 0

    async def hw_loop(self, channel: EventChannel[hw_events.HwEvent], tg: TaskGroup) -> None:
        async for event in channel.receive:
            if isinstance(event, hw_events.ButtonPressed) and self.active == 0:
                self.active += 1
                tg.start_soon(self.panel.speaker.play_wav, self.prompt_wav)
                tg.start_soon(self.dial)

    async def dial(self) -> None:
        try:
            self.calls.add(await self.engine.dial(self.config.apartments[0].residents[0]))
        except SipError:
            self.active -= 1

    async def sip_loop(self) -> None:
        codes = set(self.config.apartments[0].codes)
        async for event in self.engine.events:
            if isinstance(event, DtmfReceived) and event.handle in self.calls and event.digit in codes:
                self.panel.open_door()
                with suppress(SipError):
                    await self.engine.hangup(event.handle)
            elif isinstance(event, CallEnded) and event.handle in self.calls:
                self.calls.discard(event.handle)
                self.active -= 1
                self.completed += 1


@asynccontextmanager
async def running_parts(config: Config, *, pin_factory: Any) -> AsyncIterator[PartsApp]:
    bridge = LoopBridge()
    hw_channel: EventChannel[hw_events.HwEvent] = EventChannel(bridge)
    with Panel(config.panel, pin_factory=pin_factory, post=hw_channel.post) as panel:
        prompts = await PromptCache(Path(config.paths.cache_dir)).prepare(config.prompts)
        async with SipEngine(config.sip, bridge) as engine, anyio.create_task_group() as tg:
            app = PartsApp(config, panel, engine, prompts.speaker_wav("waiting"))
            tg.start_soon(panel.run)
            tg.start_soon(app.hw_loop, hw_channel, tg)
            tg.start_soon(app.sip_loop)
            try:
                yield app
            finally:
                tg.cancel_scope.cancel()
    bridge.close()
