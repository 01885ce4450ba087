"""Runs one visit: feeds events to the pure machine and executes its commands, one task per visit.

Everything the visit starts (timers, the prompt on the speaker) lives in the visit's own task group, so
ending the visit, by outcome or by cancellation from the app, cancels all of it: no timer or hang-up can
outlive its call and fire on a later call that reused the id. Teardown (hang up live legs, release the
relay on an error path) runs shielded with a deadline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.errors import IntercomError, SipError
from daemon.flow import commands as cmd
from daemon.flow.events import FlowEvent, LegEnded, PromptDone, Start, TimerFired
from daemon.flow.machine import Phase, VisitState, step
from daemon.flow.ports import CallPort, DoorPort, LedPort, PromptPort, SpeakerPort, VisitLogPort

__all__ = ["LegTable", "VisitResult", "VisitRunner"]

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0  # one SIP command round trip; pjsua2 answers in well under 1 s on a sane system
FAREWELL_TIMEOUT = 15.0
TEARDOWN_TIMEOUT = 3.0


class LegTable:
    """Maps SIP call handles to the visit's leg indexes, so the router can translate SIP events."""

    def __init__(self) -> None:
        self._leg_of: dict[Hashable, int] = {}
        self._handle_of: dict[int, Hashable] = {}

    def bind(self, leg: int, handle: Hashable) -> None:
        self._leg_of[handle] = leg
        self._handle_of[leg] = handle

    def leg_of(self, handle: Hashable) -> int | None:
        return self._leg_of.get(handle)

    def handle_of(self, leg: int) -> Hashable | None:
        return self._handle_of.get(leg)

    def handles(self) -> list[Hashable]:
        return list(self._leg_of)


@dataclass
class VisitResult:
    visit: str
    state: VisitState
    outcome: str = "error"
    detail: str = ""
    started: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    answered_by: str = ""
    door_opened_at: float | None = None
    ended: float = 0.0


class VisitRunner:
    """Executes a visit. Create one per visit; :meth:`run` returns when the visit is over."""

    def __init__(
        self,
        visit: str,
        state: VisitState,
        *,
        calls: CallPort,
        speaker: SpeakerPort,
        door: DoorPort,
        leds: LedPort,
        prompts: PromptPort,
        visit_log: VisitLogPort,
    ) -> None:
        self.visit = visit
        self.state = state
        self.legs = LegTable()
        self._calls, self._speaker, self._door, self._leds = calls, speaker, door, leds
        self._prompts, self._log = prompts, visit_log
        send, receive = anyio.create_memory_object_stream[FlowEvent](math.inf)
        self._inbox_send: MemoryObjectSendStream[FlowEvent] = send
        self._inbox: MemoryObjectReceiveStream[FlowEvent] = receive
        self._timers: dict[str, anyio.CancelScope] = {}
        self._prompt_scope: anyio.CancelScope | None = None
        self._prompt_done = anyio.Event()  # of the prompt started last
        self._prompt_done.set()
        self._tg: TaskGroup  # set in run(): timers and prompts live in the visit's own group
        self.result = VisitResult(visit, state)

    def post(self, event: FlowEvent) -> None:
        """Deliver an event (loop thread only; foreign threads go through the bridge first).

        Late events for a visit that has ended (a 487 after our CANCEL) are dropped: it can no longer act.
        """
        try:
            self._inbox_send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("visit %s: late event %r dropped", self.visit, event)

    async def run(self, start: Start) -> VisitResult:
        finish: cmd.Finish | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                finish = await self._feed(start)
                while finish is None:
                    event = await self._inbox.receive()
                    finish = await self._feed(event)
                if not finish.farewell:
                    # A visit's last words are heard whole: "porta aberta" started at the door's opening
                    # outlives the call it was played during (the hang-up follows 1 s later by default).
                    with anyio.move_on_after(FAREWELL_TIMEOUT):
                        await self._prompt_done.wait()
                tg.cancel_scope.cancel()  # timers and anything still playing end with the visit
        except Exception:
            log.exception("visit %s: crashed; tearing down", self.visit)
            self._door.release()
            self.result.outcome, self.result.detail = "error", "internal error (see log)"
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(TEARDOWN_TIMEOUT):
                await self._teardown()
            self._inbox_send.close()
            self._inbox.close()
        if finish is not None:
            self.result.outcome, self.result.detail = finish.outcome, finish.detail
            if finish.farewell:
                with anyio.move_on_after(FAREWELL_TIMEOUT):
                    await self._play_speaker(finish.farewell)
        self.result.state, self.result.ended = self.state, time.monotonic()
        self._log.event(
            self.visit, "OUTCOME", self.state.apartment.name, self.result.outcome, detail=self.result.detail
        )
        return self.result

    async def _feed(self, event: FlowEvent) -> cmd.Finish | None:
        self.state, commands = step(self.state, event)
        finish: cmd.Finish | None = None
        for command in commands:
            if isinstance(command, cmd.Finish):
                finish = command
            else:
                await self._execute(command)
        return finish

    async def _execute(self, c: cmd.Command) -> None:
        match c:
            case cmd.Dial(leg=leg, uri=uri):
                try:
                    with anyio.fail_after(COMMAND_TIMEOUT):
                        handle = await self._calls.dial(uri)
                except (SipError, TimeoutError) as exc:
                    log.warning("visit %s: dialing %s failed: %s", self.visit, uri, exc)
                    self.post(LegEnded(leg, getattr(exc, "status", 0), str(exc)))
                    return
                self.legs.bind(leg, handle)
            case cmd.Hangup(leg=leg):
                await self._hangup(self.legs.handle_of(leg))
            case cmd.PlayPrompt(name=name):
                self._stop_prompt()
                scope = anyio.CancelScope()
                self._prompt_scope = scope
                self._prompt_done = anyio.Event()
                self._tg.start_soon(self._prompt_task, name, scope, self._prompt_done)
            case cmd.StopPrompt():
                self._stop_prompt()
            case cmd.PlayToCall(leg=leg, name=name):
                await self._call_op("play", self._calls.play, leg, self._prompts.call_wav(name))
            case cmd.ConnectAudio(leg=leg):
                talk = await self._call_op("connect audio", self._calls.connect_audio, leg)
                if talk is not None:
                    self._tg.start_soon(talk)  # in the visit's group: the audio ends with the visit at the latest
            case cmd.PulseDoor():
                self._door.open()
                self.result.door_opened_at = time.monotonic()
            case cmd.StartTimer(name=name, seconds=seconds):
                self._cancel_timer(name)
                scope = anyio.CancelScope()
                self._timers[name] = scope
                self._tg.start_soon(self._timer_task, name, seconds, scope)
            case cmd.CancelTimer(name=name):
                self._cancel_timer(name)
            case cmd.Log(event=event, target=target, text=text):
                if event == "ANSWERED":
                    self.result.answered_at, self.result.answered_by = time.monotonic(), target
                self._log.event(self.visit, event, target, text)
            case cmd.ShowLeds(pattern=pattern):
                self._leds.show(pattern)
            case _:
                raise TypeError(f"unknown command {c!r}")

    async def _call_op(self, what: str, op: object, leg: int, *args: object) -> Any:
        handle = self.legs.handle_of(leg)
        if handle is None:
            return None
        try:
            with anyio.fail_after(COMMAND_TIMEOUT):
                return await op(handle, *args)  # type: ignore[operator]
        except (IntercomError, TimeoutError) as exc:
            # A failed announcement must not end the visit: the resident can still talk and open.
            log.warning("visit %s: %s on leg %d failed: %s", self.visit, what, leg, exc)
            return None

    async def _hangup(self, handle: Hashable | None) -> None:
        if handle is None:
            return
        try:
            with anyio.fail_after(COMMAND_TIMEOUT):
                await self._calls.hangup(handle)
        except (SipError, TimeoutError) as exc:
            log.debug("visit %s: hangup %r: %s", self.visit, handle, exc)

    async def _timer_task(self, name: str, seconds: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(seconds)
            if self._timers.get(name) is scope:
                del self._timers[name]
                self.post(TimerFired(name))

    def _cancel_timer(self, name: str) -> None:
        scope = self._timers.pop(name, None)
        if scope is not None:
            scope.cancel()

    def _stop_prompt(self) -> None:
        if self._prompt_scope is not None:
            self._prompt_scope.cancel()
            self._prompt_scope = None

    async def _prompt_task(self, name: str, scope: anyio.CancelScope, done: anyio.Event) -> None:
        try:
            with scope:
                await self._play_speaker(name)
                self.post(PromptDone(name))
        finally:
            done.set()

    async def _play_speaker(self, name: str) -> None:
        self._log.event(self.visit, "PLAYBACK_START", "visitor", name)
        try:
            await self._speaker.play_prompt(name)
        except IntercomError as exc:
            # A silent panel that still calls beats a dead one.
            log.error("visit %s: prompt %s not played: %s", self.visit, name, exc)
            return
        self._log.event(self.visit, "PLAYBACK_END", "visitor", name)

    async def _teardown(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        self._stop_prompt()
        if self.state.phase is not Phase.DONE:
            # Crashed or cancelled mid-visit: the machine never got to hang up, so every leg goes.
            for handle in self.legs.handles():
                await self._hangup(handle)
