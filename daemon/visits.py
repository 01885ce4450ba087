"""Which visit runs: presses become visits, one at a time, and SIP events are routed to the visit's legs.

The panel has one speaker and one microphone, so one visit talks at a time. A second press for the same
apartment goes to the running visit (ignored or restarts the prompt, by config: never a second call); a
press for another apartment is queued or refused (config ``timing.other_apartment_press``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from daemon.config import Apartment, Config
from daemon.flow.codes import CodeGuard
from daemon.flow.events import FlowEvent, SecondPress, Start
from daemon.flow.machine import VisitState, inbound_visit, new_visit
from daemon.flow.runner import VisitResult, VisitRunner

__all__ = ["VisitRequest", "Visits"]

log = logging.getLogger(__name__)

QUEUE_LIMIT = 8  # presses waiting for the speaker; more than this in one visit's time is a button storm


@dataclass(frozen=True)
class VisitRequest:
    apartment: Apartment
    button: str
    pressed_at: float  # monotonic time of the qualifying edge
    visit: str  # the id is given at the press, so the press is the visit's first logged event
    inbound_handle: Hashable | None = None  # an allowlisted caller already answered by the engine
    inbound_caller: str = ""


RunnerFactory = Callable[[str, VisitState], VisitRunner]


class Visits:
    """Owns the visit queue and the running visit. ``run()`` is one task in the app's task group."""

    def __init__(
        self,
        config: Config,
        make_runner: RunnerFactory,
        *,
        new_id: Callable[[], str],
        sip_ready: Callable[[], bool],
        on_done: Callable[[VisitResult, VisitRequest], Awaitable[None]],
        refuse: Callable[[VisitRequest, str], None],
    ) -> None:
        self.config = config
        self._make_runner = make_runner
        self._new_id, self._sip_ready, self._on_done, self._refuse = new_id, sip_ready, on_done, refuse
        send, receive = anyio.create_memory_object_stream[VisitRequest](math.inf)
        self._send: MemoryObjectSendStream[VisitRequest] = send
        self._receive: MemoryObjectReceiveStream[VisitRequest] = receive
        self._queued: list[str] = []
        self.current: VisitRunner | None = None
        self.current_request: VisitRequest | None = None
        self._scope: anyio.CancelScope | None = None
        self._guards: dict[str, CodeGuard] = {}
        self.completed = 0
        self._completion = anyio.Event()  # set (and replaced) each time a visit ends

    def press(self, button: str, at: float | None = None) -> tuple[str, str]:
        """A doorbell press (already debounced by hw). Returns what was done with it and the visit it
        belongs to ("-" when none), for the log and the control socket."""
        apartment = self.config.apartment_for_button(button)
        if apartment is None:
            log.warning("press on button %r which rings no apartment", button)
            return "unknown button", "-"
        current = self.current_request
        if current is not None and current.apartment.name == apartment.name and self.current is not None:
            self.current.post(SecondPress())
            return "second press", current.visit
        if apartment.name in self._queued:
            return "already queued", "-"
        request = VisitRequest(apartment, button, time.monotonic() if at is None else at, self._new_id())
        if current is not None and self.config.timing.other_apartment_press == "refuse":
            self._refuse(request, "busy")
            return "refused: another visit in progress", "-"
        if len(self._queued) >= QUEUE_LIMIT:
            return "refused: queue full", "-"
        self._queued.append(apartment.name)
        self._send.send_nowait(request)
        return ("queued" if current is not None else "started"), request.visit

    def inbound(self, handle: Hashable, caller: str) -> bool:
        """An allowlisted caller was answered by the engine. False when busy (the caller is then hung up)."""
        if self.current is not None or self._queued:
            return False
        apartment = Apartment(name="inbound", buttons=(), residents=(caller,), codes=self.config.inbound_codes)
        self._queued.append(apartment.name)
        self._send.send_nowait(VisitRequest(apartment, "", time.monotonic(), self._new_id(), handle, caller))
        return True

    def route(self, handle: Hashable, make_event: Callable[[int], FlowEvent]) -> bool:
        """Deliver a SIP event to the running visit's leg for ``handle``; False when no visit owns it."""
        runner = self.current
        if runner is None:
            return False
        leg = runner.legs.leg_of(handle)
        if leg is None:
            return False
        runner.post(make_event(leg))
        return True

    def reconfigure(self, config: Config) -> None:
        """New config for the *next* visits; the one in progress keeps the config it started with."""
        self.config = config

    def cancel_current(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        async with self._send, self._receive:
            async for request in self._receive:
                self._queued.remove(request.apartment.name)
                await self._run_one(request)

    async def _run_one(self, request: VisitRequest) -> None:
        apt = request.apartment
        timing = self.config.timing
        guard = self._guards.get(apt.name, CodeGuard())
        if request.inbound_handle is not None:
            state = inbound_visit(request.inbound_caller, apt.codes, timing, guard)
        else:
            state = new_visit(apt, timing, guard)
        visit_id = request.visit
        runner = self._make_runner(visit_id, state)
        if request.inbound_handle is not None:
            runner.legs.bind(0, request.inbound_handle)
        self.current, self.current_request = runner, request
        result: VisitResult | None = None
        try:
            with anyio.CancelScope() as scope, anyio.move_on_after(timing.visit_deadline_seconds + 30):
                # The machine has its own deadline timer; this outer bound only catches a runner bug.
                self._scope = scope
                result = await runner.run(Start(sip_ready=self._sip_ready()))
        finally:
            if result is None:
                # Cancelled (SIGTERM, `intercomctl hangup`) or past the outer bound: run() never returned, but
                # what the runner learned (who answered, when, whether the door opened) must reach history.
                # "cancelled" even if the door opened: the row's door_opened says that; this says it was cut short.
                result = replace(
                    runner.result,
                    state=runner.state,
                    ended=time.monotonic(),
                    outcome="cancelled",
                    detail="ended before its flow finished (shutdown, hangup or stuck)",
                )
            self._scope = None
            self.current, self.current_request = None, None
            self._guards[apt.name] = runner.state.guard
            self.completed += 1
            self._completion.set()
            self._completion = anyio.Event()
            with anyio.CancelScope(shield=True):
                await self._on_done(result, request)

    async def wait_completed(self, count: int) -> None:
        """Return once ``count`` visits have ended in total (callers bound it with a timeout)."""
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
