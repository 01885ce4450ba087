"""The visit boundary: presses and SIP events in, one visit at a time out.

The router owns the queue of visits, the running visit's handle->leg map, the apartments' lockouts and
the SIP registration state. The app forwards every SIP event (:data:`daemon.sip.SipEvent`) and every
hardware event (:data:`hw.events.HwEvent`) here unchanged; nothing else translates them.

The panel has one speaker and one microphone, so one visit talks at a time. A second press for the same
apartment goes to the running visit (ignored or restarts the prompt, by config: never a second call); a
press for another apartment is queued or refused (config ``timing.other_apartment_press``); a refused
visitor hears why.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVarTuple

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.config import Apartment, Config
from daemon.flow.codes import Lockout
from daemon.flow.events import Dtmf, FlowEvent, LegAnswered, LegEnded, LegRinging, SecondPress, Start
from daemon.flow.legs import LegTable
from daemon.flow.machine import UNREACHABLE, inbound_visit, new_visit
from daemon.flow.ports import VisitLogPort, VisitPorts
from daemon.flow.runner import VisitResult, VisitRunner
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt
from daemon.sip.types import (
    CallAnswered,
    CallEnded,
    CallHandle,
    CallRinging,
    DtmfReceived,
    IncomingCall,
    RegistrationChanged,
    SipEvent,
)
from hw import events as hw_events

__all__ = ["QUEUE_LIMIT", "VisitRequest", "VisitRouter"]

log = logging.getLogger(__name__)

Ts = TypeVarTuple("Ts")

QUEUE_LIMIT = 8  # presses waiting for the speaker; more than this in one visit's time is a button storm
REFUSAL_PROMPT_WAIT = 10.0  # a refused visitor's prompt waits this long at most for the speaker to be free
HANGUP_TIMEOUT = 5.0
INBOUND = "inbound"  # the apartment name of a visit started by an allowlisted caller


@dataclass(frozen=True)
class VisitRequest:
    apartment: Apartment
    button: str
    pressed_at: float  # monotonic time of the qualifying edge
    visit: str  # the id is given at the press, so the press is the visit's first logged event
    inbound_handle: CallHandle | None = None  # an allowlisted caller already answered by the engine


class VisitRouter:
    """Owns the visit queue and the running visit. ``run()`` is one task in the app's task group."""

    def __init__(
        self,
        config: Config,
        ports: VisitPorts,
        *,
        visit_log: VisitLogPort,
        new_id: Callable[[], str],
        registered: bool,
        on_start: Callable[[VisitRequest], None],
        on_done: Callable[[VisitResult, VisitRequest], Awaitable[None]],
    ) -> None:
        self.config = config
        self._ports = ports
        self._log = visit_log
        self._new_id, self._on_start, self._on_done = new_id, on_start, on_done
        self.registered = registered  # False only once the registrar said so: "out of service" at once
        send, receive = anyio.create_memory_object_stream[VisitRequest](math.inf)
        self._send: MemoryObjectSendStream[VisitRequest] = send
        self._receive: MemoryObjectReceiveStream[VisitRequest] = receive
        self._queued: list[str] = []
        self.current: VisitRunner | None = None
        self.current_request: VisitRequest | None = None
        self._scope: anyio.CancelScope | None = None
        self._lockouts: dict[str, Lockout] = {}  # per apartment, across visits; never any typed digit
        self._tg: TaskGroup | None = None  # refusal prompts and stray hang-ups run here
        self._refusal_pending = False
        self.completed = 0
        self._completion = anyio.Event()  # set (and replaced) each time a visit ends

    # -- events in -------------------------------------------------------------------------------------

    def hw_event(self, event: hw_events.HwEvent) -> None:
        match event:
            case hw_events.ButtonPressed(button=button, at=at):
                self.press(button, at=at)
            case _:
                self._log.event("-", type(event).__name__.upper(), "", hw_event_text(event))

    def sip_event(self, event: SipEvent) -> None:
        match event:
            case RegistrationChanged(active=active, code=code, reason=reason, registrar=registrar):
                self.registered = active
                self._ports.leds.show(LedPattern.IDLE if active else LedPattern.FAULT)
                level = logging.INFO if active else logging.ERROR
                via = f" ({registrar})" if registrar else ""
                log.log(level, "registration %s%s: %s %s", "up" if active else "down", via, code, reason)
                # In the event stream too: MQTT and `events --follow` watchers see the PBX come and go, and
                # which of the registrars is in use (or, when down, which one failed last).
                name = "REGISTRATION_UP" if active else "REGISTRATION_DOWN"
                self._log.event("-", name, registrar or "registrar", f"{code} {reason}".strip())
            case CallRinging(handle=h):
                self._route(h, LegRinging)
            case CallAnswered(handle=h):
                self._route(h, LegAnswered)
            case CallEnded(handle=h, code=code, reason=reason, local=local):
                # local: no response ever came from the far end, pjsip made the status up. Nobody was reached,
                # whatever the number says (0 is "no response at all" to the machine).
                heard = 0 if local and code not in UNREACHABLE else code
                self._route(h, lambda leg: LegEnded(leg, heard, reason))
            case DtmfReceived(handle=h, digit=digit, method=method, at=at):
                if not self._route(h, lambda leg: Dtmf(leg, digit, method, at)):
                    log.warning("DTMF from a call no visit owns (%s): ignored", method)
            case IncomingCall(handle=h, remote_uri=uri, allowed=True):
                if not self._inbound(h, uri):
                    self._start_soon(self._hangup_stray, h)
            case _:
                pass

    def press(self, button: str, *, at: float | None = None, source: str = "button") -> tuple[str, str]:
        """A doorbell press (already debounced by hw, or simulated by ``source``). Logs BUTTON_PRESSED and
        returns what was done with it and the visit it belongs to ("-" when none)."""
        what, visit, refused = self._press(button, time.monotonic() if at is None else at)
        self._log.event(visit, "BUTTON_PRESSED", button, what if source == "button" else f"{source}: {what}")
        if refused is not None:
            self._log.event("-", "PRESS_REFUSED", refused.name, what.removeprefix("refused: "))
            if not self._refusal_pending:  # one at a time: a button storm must not queue a chorus
                self._refusal_pending = True
                self._start_soon(self._say_refusal, self._ports)  # the visitor at the panel hears why
        return what, visit

    def _press(self, button: str, at: float) -> tuple[str, str, Apartment | None]:
        """(what was done, the visit, the apartment whose visitor was refused)."""
        apartment = self.config.apartment_for_button(button)
        if apartment is None:
            log.warning("press on button %r which rings no apartment", button)
            return "unknown button", "-", None
        current = self.current_request
        if current is not None and current.apartment.name == apartment.name and self.current is not None:
            self.current.post(SecondPress())
            return "second press", current.visit, None
        if apartment.name in self._queued:
            return "already queued", "-", None
        if current is not None and self.config.timing.other_apartment_press == "refuse":
            return "refused: another visit in progress", "-", apartment
        if len(self._queued) >= QUEUE_LIMIT:
            return "refused: queue full", "-", apartment
        request = VisitRequest(apartment, button, at, self._new_id())
        self._queued.append(apartment.name)
        self._send.send_nowait(request)
        return ("queued" if current is not None else "started"), request.visit, None

    def _inbound(self, handle: CallHandle, caller: str) -> bool:
        """An allowlisted caller was answered by the engine. False when busy (the caller is then hung up)."""
        if self.current is not None or self._queued:
            return False
        apartment = Apartment(name=INBOUND, buttons=(), residents=(caller,), codes=self.config.inbound_codes)
        self._queued.append(apartment.name)
        self._send.send_nowait(VisitRequest(apartment, "", time.monotonic(), self._new_id(), handle))
        return True

    def _route(self, handle: CallHandle, make_event: Callable[[int], FlowEvent]) -> bool:
        """Deliver a SIP event to the running visit's leg for ``handle``; False when no visit owns it."""
        runner = self.current
        if runner is None:
            return False
        leg = runner.legs.leg_of(handle)
        if leg is None:
            return False
        runner.post(make_event(leg))
        return True

    # -- control ---------------------------------------------------------------------------------------

    def reconfigure(self, config: Config, ports: VisitPorts) -> None:
        """New config and ports (a new prompt set) for the *next* visits; the one in progress keeps its own."""
        self.config, self._ports = config, ports

    def cancel_current(self) -> bool:
        """End the visit in progress (its teardown hangs up its calls). False when there was none."""
        if self._scope is None:
            return False
        self._scope.cancel()
        return True

    async def wait_completed(self, count: int) -> None:
        """Return once ``count`` visits have ended and been handed to ``on_done`` (bound it with a timeout)."""
        while self.completed < count:
            await self._completion.wait()

    def status(self) -> dict[str, object]:
        runner, request = self.current, self.current_request
        return {
            "active": None
            if runner is None or request is None
            else {
                "visit": runner.visit,
                "apartment": request.apartment.name,
                "phase": runner.state.phase.name,
                "legs": [{"uri": leg.uri, "status": leg.status.name} for leg in runner.state.legs],
            },
            "queued": list(self._queued),
            "completed": self.completed,
        }

    # -- the visits ------------------------------------------------------------------------------------

    async def run(self) -> None:
        async with self._send, self._receive, anyio.create_task_group() as tg:
            self._tg = tg
            try:
                async for request in self._receive:
                    self._queued.remove(request.apartment.name)
                    await self._run_one(request)
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _run_one(self, request: VisitRequest) -> None:
        apt, timing, ports = request.apartment, self.config.timing, self._ports
        lockout = self._lockouts.get(apt.name)
        if request.inbound_handle is not None:
            state = inbound_visit(apt, timing, lockout)
        else:
            state = new_visit(apt, timing, lockout)
        legs = LegTable()
        if request.inbound_handle is not None:
            legs.bind(0, request.inbound_handle)
        runner = VisitRunner(request.visit, state, ports, self._log, legs)
        self.current, self.current_request = runner, request
        self._on_start(request)
        result: VisitResult | None = None
        try:
            with anyio.CancelScope() as scope, anyio.move_on_after(timing.visit_deadline_seconds + 30):
                # The machine has its own deadline timer; this outer bound only catches a runner bug.
                self._scope = scope
                result = await runner.run(Start(sip_ready=self.registered))
        finally:
            if result is None:
                # Cancelled (SIGTERM, `intercomctl hangup`) or past the outer bound: run() never returned, but
                # what the runner learned (who answered, when, whether the door opened) must reach history.
                # "cancelled" even if the door opened: the row's door_opened says that; this says it was cut short.
                result = replace(
                    runner.result,
                    state=runner.state,
                    ended=time.monotonic(),
                    outcome=Outcome.CANCELLED,
                    detail="ended before its flow finished (shutdown, hangup or stuck)",
                )
            self._scope = None
            self.current, self.current_request = None, None
            self._lockouts[apt.name] = runner.state.lockout
            # The one place a visit's OUTCOME is logged, however it ended.
            self._log.event(result.visit, "OUTCOME", apt.name, result.outcome, detail=result.detail)
            with anyio.CancelScope(shield=True):
                await self._on_done(result, request)
            self.completed += 1
            self._completion.set()
            self._completion = anyio.Event()

    # -- helpers ---------------------------------------------------------------------------------------

    def _start_soon(self, fn: Callable[[*Ts], Coroutine[Any, Any, object]], *args: *Ts) -> None:
        if self._tg is None:
            log.warning("router not running: %s dropped", getattr(fn, "__name__", fn))
            return
        self._tg.start_soon(fn, *args)

    async def _say_refusal(self, ports: VisitPorts) -> None:
        # The speaker plays one thing at a time: the refusal waits for the running visit's prompt, but not
        # for a whole conversation (talk mode holds the speaker for the call).
        try:
            with anyio.move_on_after(REFUSAL_PROMPT_WAIT) as scope:
                error = await ports.speaker.play_prompt(Prompt.PANEL_BUSY)
                if error is not None:
                    log.error("refusal prompt not played: %s", error)
        finally:
            self._refusal_pending = False
        if scope.cancelled_caught:
            log.info("refusal prompt dropped: the speaker stayed busy %.0f s", REFUSAL_PROMPT_WAIT)

    async def _hangup_stray(self, handle: CallHandle) -> None:
        with anyio.move_on_after(HANGUP_TIMEOUT):
            error = await self._ports.calls.hangup(handle)
            if error is not None:
                log.debug("hangup %s: %s", handle, error)


def hw_event_text(event: hw_events.HwEvent) -> str:
    fields = getattr(event, "__dataclass_fields__", {})
    return ", ".join(f"{name}={getattr(event, name)!r}" for name in fields if name != "at")
