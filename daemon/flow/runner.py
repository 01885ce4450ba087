"""Runs one visit: feeds events to the pure machine and executes its commands, one task per visit.

Everything the visit starts (timers, the prompt on the speaker) lives in the visit's own task group, so
ending the visit, by outcome or by cancellation from the router, cancels all of it: no timer or hang-up can
outlive its call and fire on a later call that reused the id. Teardown (hang up live legs, release the
relay on an error path) runs shielded with a deadline.

The runner reports what happened through :class:`VisitResult`, read off the machine's state (who answered,
whether the relay energized), never off log lines; the router logs the OUTCOME.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.errors import SipError
from daemon.flow import commands as cmd
from daemon.flow.events import DoorRefused, DoorUnlocked, FlowEvent, LegEnded, PromptDone, Start, TimerFired
from daemon.flow.legs import LegTable
from daemon.flow.machine import Phase, VisitState, step
from daemon.flow.ports import VisitLogPort, VisitPorts
from daemon.flow.vocabulary import Outcome, Prompt, Timer
from daemon.sip.types import CallHandle

__all__ = ["VisitResult", "VisitRunner"]

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0  # one SIP command round trip; pjsua2 answers in well under 1 s on a sane system
FAREWELL_TIMEOUT = 15.0
TEARDOWN_TIMEOUT = 3.0


@dataclass
class VisitResult:
    visit: str
    state: VisitState
    outcome: Outcome = Outcome.ERROR
    detail: str = ""
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
        ports: VisitPorts,
        visit_log: VisitLogPort,
        legs: LegTable | None = None,
        *,
        on_progress: Callable[[VisitResult], None] | None = None,
    ) -> None:
        """``on_progress`` is told (on the loop; it must not block) when the call is answered and when the door
        opens, so the visit's history row says so before the visit ends: a crash then leaves the truth behind."""
        self.visit = visit
        self._on_progress = on_progress
        self.state = state
        self.legs = legs or LegTable()
        self._ports = ports
        self._log = visit_log
        send, receive = anyio.create_memory_object_stream[FlowEvent](math.inf)
        self._inbox_send: MemoryObjectSendStream[FlowEvent] = send
        self._inbox: MemoryObjectReceiveStream[FlowEvent] = receive
        self._timers: dict[Timer, anyio.CancelScope] = {}
        self._prompt_scope: anyio.CancelScope | None = None
        self._prompt_done = anyio.Event()  # of the prompt started last
        self._prompt_done.set()
        self._tg: TaskGroup  # set in run(): timers and prompts live in the visit's own group
        self.result = VisitResult(visit, state)
        self._on_started: Callable[[], None] | None = None  # run()'s on_started, until it has been called
        # The start's visit-log events (CALL_START), held until its dials have run: see run().
        self._held_logs: list[cmd.Log] | None = None

    def post(self, event: FlowEvent) -> None:
        """Deliver an event (loop thread only; foreign threads go through the bridge first).

        Late events for a visit that has ended (a 487 after our CANCEL) are dropped: it can no longer act.
        """
        try:
            self._inbox_send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("visit %s: late event %r dropped", self.visit, event)

    async def run(self, start: Start, on_started: Callable[[], None] | None = None) -> VisitResult:
        """Run the visit to its end. ``on_started`` is called once the start's commands have run (its calls dialled:
        bookkeeping that waited for the INVITEs to leave, such as the history row's first write), then the visit-log
        events the start logged are handed over, in order: an event's hand-over (its log record, the events.jsonl
        writer woken, subscribers) took CPU, and woke a thread, that the INVITE needed on a Pi-sized CPU (issue 18).
        A start cut short (cancelled, crashed) is told and hands its events over all the same."""
        finish: cmd.Finish | None = None
        self._on_started = on_started
        self._held_logs = []
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                finish = await self._feed(start)
                self._started()
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
            self._ports.door.release()
            self.result.outcome, self.result.detail = Outcome.ERROR, "internal error (see log)"
        finally:
            self._started()  # no-op once told; a start cut short still says what it began
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
        return self.result

    async def _feed(self, event: FlowEvent) -> cmd.Finish | None:
        # Events a command answers at once (the relay's verdict, a dial that never left) are fed before
        # the next inbox event: nothing else may happen to the visit in between.
        pending: deque[FlowEvent] = deque([event])
        finish: cmd.Finish | None = None
        while pending:
            self.state, commands = step(self.state, pending.popleft())
            self._observe()
            for command in commands:
                if isinstance(command, cmd.Finish):
                    finish = command
                elif (answer := await self._execute(command)) is not None:
                    pending.append(answer)
        return finish

    def _observe(self) -> None:
        """Copy what the machine's state now says into the result, stamped with the time it became true."""
        state, result = self.state, self.result
        progressed = False
        if result.answered_at is None and state.answered is not None:
            result.answered_at, result.answered_by = time.monotonic(), state.legs[state.answered].uri
            progressed = True
        if result.door_opened_at is None and state.door_opened:
            result.door_opened_at = time.monotonic()
            progressed = True
        if progressed:
            self._started()  # an inbound visit is answered by its start: the start is told first
            if self._on_progress is not None:
                self._on_progress(result)

    def _started(self) -> None:
        started, self._on_started = self._on_started, None
        if started is not None:
            started()
        held, self._held_logs = self._held_logs, None
        for c in held or ():
            self._log.event(self.visit, c.event, c.target, c.text)

    async def _execute(self, c: cmd.Command) -> FlowEvent | None:
        """Run one command; returns the event it answers with at once, if any."""
        match c:
            case cmd.Dial(leg=leg, uri=uri):
                return await self._dial(leg, uri)
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
                await self._play_to_call(leg, name)
            case cmd.ConnectAudio(leg=leg):
                await self._connect_audio(leg)
            case cmd.PulseDoor(door=name):
                door = self._ports.door.open(name)
                return DoorUnlocked(door.door) if door.opened else DoorRefused(door.reason)
            case cmd.StartTimer(name=name, seconds=seconds):
                self._cancel_timer(name)
                scope = anyio.CancelScope()
                self._timers[name] = scope
                self._tg.start_soon(self._timer_task, name, seconds, scope)
            case cmd.CancelTimer(name=name):
                self._cancel_timer(name)
            case cmd.Log(event=event, target=target, text=text):
                if self._held_logs is not None:
                    self._held_logs.append(c)  # the start's: handed over once its dials have run
                else:
                    self._log.event(self.visit, event, target, text)
            case cmd.ShowLeds(pattern=pattern):
                self._ports.leds.show(pattern)
            case _:
                raise TypeError(f"unknown command {c!r}")
        return None

    async def _dial(self, leg: int, uri: str) -> FlowEvent | None:
        try:
            with anyio.fail_after(COMMAND_TIMEOUT):
                handle = await self._ports.calls.dial(uri)
        except TimeoutError:
            handle = SipError(f"the SIP engine did not answer within {COMMAND_TIMEOUT:g} s")
        if isinstance(handle, SipError):
            log.warning("visit %s: dialing %s failed locally: %s", self.visit, uri, handle)
            return LegEnded(leg, handle.status, str(handle), local=True)
        self.legs.bind(leg, handle)
        return None

    async def _play_to_call(self, leg: int, name: Prompt) -> None:
        handle = self.legs.handle_of(leg)
        if handle is None:
            return
        with anyio.move_on_after(COMMAND_TIMEOUT):
            error = await self._ports.calls.play(handle, self._ports.prompts.call_wav(name))
            if error is not None:
                # A failed announcement must not end the visit: the resident can still talk and open.
                log.warning("visit %s: playing %s on leg %d failed: %s", self.visit, name, leg, error)

    async def _connect_audio(self, leg: int) -> None:
        handle = self.legs.handle_of(leg)
        if handle is None:
            return
        with anyio.move_on_after(COMMAND_TIMEOUT):
            error = await self._ports.calls.connect_audio(handle)
            if error is not None:
                log.warning("visit %s: connecting audio on leg %d failed: %s", self.visit, leg, error)

    async def _hangup(self, handle: CallHandle | None) -> None:
        if handle is None:
            return
        with anyio.move_on_after(COMMAND_TIMEOUT):
            error = await self._ports.calls.hangup(handle)
            if error is not None:
                log.debug("visit %s: hangup %s: %s", self.visit, handle, error)

    async def _timer_task(self, name: Timer, seconds: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(seconds)
            if self._timers.get(name) is scope:
                del self._timers[name]
                self.post(TimerFired(name))

    def _cancel_timer(self, name: Timer) -> None:
        scope = self._timers.pop(name, None)
        if scope is not None:
            scope.cancel()

    def _stop_prompt(self) -> None:
        if self._prompt_scope is not None:
            self._prompt_scope.cancel()
            self._prompt_scope = None

    async def _prompt_task(self, name: Prompt, scope: anyio.CancelScope, done: anyio.Event) -> None:
        try:
            with scope:
                await self._play_speaker(name)
                self.post(PromptDone(name))
        finally:
            done.set()

    async def _play_speaker(self, name: Prompt) -> None:
        self._log.event(self.visit, "PLAYBACK_START", "visitor", name)
        error = await self._ports.speaker.play_prompt(name)
        if error is not None:
            # A silent panel that still calls beats a dead one.
            log.error("visit %s: prompt %s not played: %s", self.visit, name, error)
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
