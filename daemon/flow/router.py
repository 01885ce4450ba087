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
from functools import partial
from typing import Any, TypeVarTuple

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.access import PinGuard
from daemon.config import INBOUND_APARTMENT, Apartment, Config
from daemon.flow.codes import Lockout
from daemon.flow.entry import KeypadEntry
from daemon.flow.events import Dtmf, FlowEvent, LegAnswered, LegEnded, LegRinging, SecondPress, Start
from daemon.flow.keypad import CallApartment, CheckPin, Feedback, KeypadAction, KeypadLimits, Tone
from daemon.flow.legs import LegTable
from daemon.flow.machine import UNREACHABLE, inbound_visit, new_visit
from daemon.flow.pin_desk import KEYPAD, PinDesk
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
    RegistrationFailure,
    SipEvent,
)
from hw import events as hw_events

__all__ = ["QUEUE_LIMIT", "VisitRequest", "VisitRouter"]

log = logging.getLogger(__name__)

Ts = TypeVarTuple("Ts")

QUEUE_LIMIT = 8  # presses waiting for the speaker; more than this in one visit's time is a button storm
REFUSAL_PROMPT_WAIT = 10.0  # a refused visitor's prompt waits this long at most for the speaker to be free
HANGUP_TIMEOUT = 5.0
INBOUND = INBOUND_APARTMENT  # the apartment name of a visit started by an allowlisted caller (reserved)


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
        on_progress: Callable[[VisitResult, VisitRequest], None] | None = None,
        lockouts: dict[str, Lockout] | None = None,
        pin_guard: PinGuard | None = None,
        on_pin_guard_change: Callable[[], Awaitable[None]] | None = None,
        on_open: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self._ports = ports
        self._log = visit_log
        self._new_id, self._on_start, self._on_done = new_id, on_start, on_done
        self._on_progress = on_progress  # answered, door opened: the history row is updated as it happens
        self._on_open = on_open  # (door, who, how) for every open outside a visit: history records it
        self.registered = registered  # False only once the registrar said so: "out of service" at once
        send, receive = anyio.create_memory_object_stream[VisitRequest](math.inf)
        self._send: MemoryObjectSendStream[VisitRequest] = send
        self._receive: MemoryObjectReceiveStream[VisitRequest] = receive
        self._queued: list[str] = []
        self.current: VisitRunner | None = None
        self.current_request: VisitRequest | None = None
        self._scope: anyio.CancelScope | None = None
        # Per apartment, across visits (and restarts: the app saves them); never any typed digit.
        self._lockouts: dict[str, Lockout] = dict(lockouts or {})
        self._tg: TaskGroup | None = None  # refusal prompts and stray hang-ups run here
        self._saying: set[Prompt] = set()  # panel prompts (refusal, not found) playing outside a visit
        self._tone_pending = False
        self._tone_next: Tone | None = None  # an error tone asked for while a click played
        limits = config.keypad.limits if config.keypad is not None else KeypadLimits()
        self.keypad = KeypadEntry(limits, self._keypad_action)
        self.pins = PinDesk(
            visit_log,
            say=self._say_soon,
            tone=self._tone_soon,
            open_door=self.open_for,
            guard=pin_guard,
            on_guard_change=on_pin_guard_change,
        )
        self.completed = 0
        self._completion = anyio.Event()  # set (and replaced) each time a visit ends
        # The BUTTON_PRESSED (or KEYPAD_CALL) of the visit about to start, handed over with its start: see _log_press.
        self._held_press: Callable[[], None] | None = None

    # -- events in -------------------------------------------------------------------------------------

    def hw_event(self, event: hw_events.HwEvent) -> None:
        match event:
            case hw_events.ButtonPressed(button=button, at=at):
                self.press(button, at=at)
            case hw_events.KeyPressed(key=key, at=at):
                self.keypad.key(key, at)  # never logged: it may be a digit of a PIN
            case hw_events.ExitRequested(opened=True, door=door) if self._on_open is not None:
                self._log.event("-", type(event).__name__.upper(), "", hw_event_text(event))
                self._on_open(door, "exit button", "exit")
            case _:
                self._log.event("-", type(event).__name__.upper(), "", hw_event_text(event))

    def sip_event(self, event: SipEvent) -> None:
        match event:
            case RegistrationChanged(active=active, code=code, reason=reason, registrar=registrar, failure=failure):
                self.registered = active
                self._ports.leds.show(LedPattern.IDLE if active else LedPattern.FAULT)
                level = logging.INFO if active else logging.ERROR
                via = f" ({registrar})" if registrar else ""
                # A local transport error has no SIP status (code 0): its reason says "transport error: ...".
                why = reason if failure is RegistrationFailure.TRANSPORT else f"{code} {reason}"
                log.log(level, "registration %s%s: %s", "up" if active else "down", via, why)
                # In the event stream too: MQTT and `events --follow` watchers see the PBX come and go, and
                # which of the registrars is in use (or, when down, which one failed last).
                name = "REGISTRATION_UP" if active else "REGISTRATION_DOWN"
                self._log.event("-", name, registrar or "registrar", why.strip())
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
        apartment = self.config.apartment_for_button(button)
        text = what if source == "button" else f"{source}: {what}"
        name = apartment.name if apartment else ""
        self._log_press(what, partial(self._log.event, visit, "BUTTON_PRESSED", button, text, apartment=name))
        self._refused(refused, what)
        return what, visit

    def _log_press(self, what: str, event: Callable[[], None]) -> None:
        """Hand a press's event over to the visit log, or, when the press starts the next visit, hold it until that
        visit's calls are dialled (:meth:`_visit_started`): its hand-over took CPU, and woke the log's writers,
        while the INVITE waited on a Pi-sized CPU (issue 18). The log keeps the order of the presses."""
        self._release_press()
        if what == "started" and len(self._queued) == 1:
            self._held_press = event
        else:
            event()

    def _release_press(self) -> None:
        held, self._held_press = self._held_press, None
        if held is not None:
            held()

    def _refused(self, refused: Apartment | None, what: str) -> None:
        if refused is not None:
            self._log.event("-", "PRESS_REFUSED", refused.name, what.removeprefix("refused: "))
            self._say_soon(Prompt.PANEL_BUSY)  # the visitor at the panel hears why

    def dial_number(self, number: str, *, at: float | None = None, source: str = KEYPAD) -> tuple[str, str]:
        """A number completed at the keypad (or simulated by ``source``): the visit runs exactly as a press of
        that apartment's button would. Logs KEYPAD_CALL, or NUMBER_NOT_FOUND (with the count of digits only: a
        resident who forgot the '#' before a PIN must not find it in the log); returns (what, visit)."""
        apartment = self.config.apartment_for_number(number)
        if apartment is None:
            self._log.event("-", "NUMBER_NOT_FOUND", source, f"{len(number)} digit(s): no apartment has that number")
            self._say_soon(Prompt.APARTMENT_NOT_FOUND)
            return "not found", "-"
        what, visit, refused = self._request(apartment, KEYPAD, time.monotonic() if at is None else at)
        text = what if source == KEYPAD else f"{source}: {what}"
        self._log_press(what, partial(self._log.event, visit, "KEYPAD_CALL", apartment.name, text))
        self._refused(refused, what)
        return what, visit

    def _keypad_action(self, action: KeypadAction) -> None:
        match action:
            case Feedback(tone=tone, why=why):
                if why and tone is Tone.ERROR:
                    log.info("keypad: %s", why)  # the reason only, never a key
                self._tone_soon(tone)
            case CallApartment(number=number):
                self.dial_number(number)
            case CheckPin(pin=pin):
                self.pins.check_soon(pin, self.config)

    def open_for(self, door: str, who: str, how: str) -> bool:
        """Open ``door`` outside a visit (a PIN) and record who, which door and how. True only if it energized."""
        result = self._ports.door.open(door)
        name = result.door or door
        if not result.opened:
            self._log.event("-", "DOOR_OPEN_REFUSED", who, result.reason, door=name, method=how)
            self._say_soon(Prompt.DOOR_NOT_OPENED)
            return False
        self._log.event("-", "DOOR_OPEN", who, f"{name} opened", door=name, method=how)
        self._say_soon(Prompt.DOOR_OPEN)
        if self._on_open is not None:
            self._on_open(name, who, how)
        return True

    def _press(self, button: str, at: float) -> tuple[str, str, Apartment | None]:
        """(what was done, the visit, the apartment whose visitor was refused)."""
        apartment = self.config.apartment_for_button(button)
        if apartment is None:
            log.warning("press on button %r which rings no apartment", button)
            return "unknown button", "-", None
        return self._request(apartment, button, at)

    def _request(self, apartment: Apartment, button: str, at: float) -> tuple[str, str, Apartment | None]:
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
        codes, door_codes = self.config.inbound_codes, self.config.inbound_door_codes
        apartment = Apartment(name=INBOUND, buttons=(), residents=(caller,), codes=codes, door_codes=door_codes)
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

    @property
    def lockouts(self) -> dict[str, Lockout]:
        """A copy of the apartments' lockouts (for saving them)."""
        return dict(self._lockouts)

    def reconfigure(self, config: Config, ports: VisitPorts) -> None:
        """New config and ports (a new prompt set) for the *next* visits; the one in progress keeps its own."""
        self.config, self._ports = config, ports
        if config.keypad is not None:
            self.keypad.limits = config.keypad.limits

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
            tg.start_soon(self.keypad.run)
            tg.start_soon(self.pins.run)
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
        on_progress = self._on_progress
        runner = VisitRunner(
            request.visit,
            state,
            ports,
            self._log,
            legs,
            on_progress=None if on_progress is None else (lambda result: on_progress(result, request)),
        )
        self.current, self.current_request = runner, request
        result: VisitResult | None = None
        try:
            with anyio.CancelScope() as scope, anyio.move_on_after(timing.visit_deadline_seconds + 30):
                # The machine has its own deadline timer; this outer bound only catches a runner bug.
                self._scope = scope
                # on_start once the visit's first calls are dialled: the INVITE does not wait for its bookkeeping
                # (on a Pi-sized CPU the history row's hand-over, a thread woken, delayed it; issue 18); nor for the
                # press's and the start's visit-log events, handed over then too.
                result = await runner.run(Start(sip_ready=self.registered), partial(self._visit_started, request))
        finally:
            self._release_press()  # a visit that never got to its start still logs its press before its OUTCOME
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

    def _visit_started(self, request: VisitRequest) -> None:
        """The visit's start has dialled: its press is logged (held since the press), then the app is told."""
        self._release_press()
        self._on_start(request)

    # -- helpers ---------------------------------------------------------------------------------------

    def _start_soon(self, fn: Callable[[*Ts], Coroutine[Any, Any, object]], *args: *Ts) -> None:
        if self._tg is None:
            log.warning("router not running: %s dropped", getattr(fn, "__name__", fn))
            return
        self._tg.start_soon(fn, *args)

    def _say_soon(self, prompt: Prompt) -> None:
        if prompt not in self._saying:  # one at a time: a button storm must not queue a chorus
            self._saying.add(prompt)
            self._start_soon(self._say, self._ports, prompt)

    async def _say(self, ports: VisitPorts, prompt: Prompt) -> None:
        # The speaker plays one thing at a time: the prompt waits for the running visit's prompt, but not
        # for a whole conversation (talk mode holds the speaker for the call).
        try:
            with anyio.move_on_after(REFUSAL_PROMPT_WAIT) as scope:
                error = await ports.speaker.play_prompt(prompt)
                if error is not None:
                    log.error("%s prompt not played: %s", prompt, error)
        finally:
            self._saying.discard(prompt)
        if scope.cancelled_caught:
            log.info("%s prompt dropped: the speaker stayed busy %.0f s", prompt, REFUSAL_PROMPT_WAIT)

    def _tone_soon(self, tone: Tone) -> None:
        # Keys typed faster than a click plays coalesce: the feedback must never queue up behind itself. An error
        # tone (a PIN refused right after its '#' clicked) waits for the click rather than being lost.
        if self._ports.tones is None:
            return
        if not self._tone_pending:
            self._tone_pending = True
            self._start_soon(self._tone, self._ports, tone)
        elif tone is Tone.ERROR:
            self._tone_next = tone

    async def _tone(self, ports: VisitPorts, tone: Tone | None) -> None:
        try:
            while tone is not None and ports.tones is not None:
                error = await ports.tones.play_tone(tone)
                if error is not None:
                    log.debug("key tone not played: %s", error)
                tone, self._tone_next = self._tone_next, None
        finally:
            self._tone_pending = False

    async def _hangup_stray(self, handle: CallHandle) -> None:
        with anyio.move_on_after(HANGUP_TIMEOUT):
            error = await self._ports.calls.hangup(handle)
            if error is not None:
                log.debug("hangup %s: %s", handle, error)


def hw_event_text(event: hw_events.HwEvent) -> str:
    fields = getattr(event, "__dataclass_fields__", {})
    return ", ".join(f"{name}={getattr(event, name)!r}" for name in fields if name != "at")
