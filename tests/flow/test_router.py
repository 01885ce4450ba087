"""The visit router: presses and SIP events in, one visit at a time, with fakes for every port."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from daemon.config import Apartment, ButtonConfig, Config, TimingConfig
from daemon.flow.ports import VisitPorts
from daemon.flow.router import INBOUND, QUEUE_LIMIT, VisitRequest, VisitRouter
from daemon.flow.runner import VisitResult
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt
from daemon.sip.types import CallAnswered, CallEnded, CallHandle, DtmfReceived, IncomingCall, RegistrationChanged
from hw.events import ButtonPressed, TamperTriggered
from tests.flow.fakes import FakeCalls, FakeDoor, FakeSpeaker, Recorder, call, ports

pytestmark = pytest.mark.anyio

A = Apartment(name="A", buttons=("a",), residents=("sip:a@h",), codes=("4711",))
B = Apartment(name="B", buttons=("b",), residents=("sip:b@h",), codes=("2",))
CONFIG = Config(
    buttons=(ButtonConfig("a", 17), ButtonConfig("b", 18)),
    apartments=(A, B),
    inbound_codes=("9",),
    timing=TimingConfig(ring_timeout_seconds=30, hangup_after_open_seconds=0.05),
)


class Harness:
    def __init__(self, config: Config = CONFIG, *, door: FakeDoor | None = None) -> None:
        self.calls, self.speaker, self.rec = FakeCalls(), FakeSpeaker(), Recorder()
        self.door = door or FakeDoor()
        self.ports: VisitPorts = ports(self.calls, self.speaker, self.door, self.rec)
        self.done: list[tuple[VisitResult, VisitRequest]] = []
        self.started: list[VisitRequest] = []
        self.visit_started = anyio.Event()
        self.ids = iter(f"v{i}" for i in range(100))
        self.router = VisitRouter(
            config,
            self.ports,
            visit_log=self.rec,
            new_id=lambda: next(self.ids),
            registered=True,
            on_start=self.on_start,
            on_done=self.on_done,
        )

    def on_start(self, request: VisitRequest) -> None:
        assert self.router.current is not None  # SIP events can be routed from the first command on
        self.started.append(request)
        self.visit_started.set()

    async def on_done(self, result: VisitResult, request: VisitRequest) -> None:
        self.done.append((result, request))

    async def next_visit(self) -> None:
        with anyio.fail_after(5):
            await self.visit_started.wait()
        self.visit_started = anyio.Event()

    def handle(self) -> CallHandle:
        """The running visit's first leg's call."""
        runner = self.router.current
        assert runner is not None
        handle = runner.legs.handle_of(0)
        assert handle is not None
        return handle

    def digits(self, handle: CallHandle, text: str, at: float = 1.0) -> None:
        for digit in text:
            self.router.sip_event(DtmfReceived(handle, digit, "rfc2833", at))

    async def answered_then(self, text: str, *, hang_up: bool = True) -> VisitResult:
        """Answer the running visit's call, type ``text``, hang up; return the visit's result."""
        count = len(self.done)
        await self.rec.until("CALL_START", len([r for r in self.started if r.inbound_handle is None]))
        handle = self.handle()
        self.router.sip_event(CallAnswered(handle))
        self.digits(handle, text)
        if hang_up:
            self.router.sip_event(CallEnded(handle, 200, "BYE"))
        with anyio.fail_after(5):
            await self.router.wait_completed(count + 1)
        return self.done[-1][0]


async def test_second_press_for_the_same_apartment_never_places_a_second_call() -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        assert h.router.press("a") == ("started", "v0")
        await h.next_visit()
        assert h.router.press("a") == ("second press", "v0")
        await h.answered_then("")
        tg.cancel_scope.cancel()
    assert h.calls.dialed == ["sip:a@h"]
    assert [r.visit for r, _ in h.done] == ["v0"]
    assert h.rec.events[0] == ("BUTTON_PRESSED", "started") and h.rec.visits[0] == "v0"


async def test_other_apartment_is_queued_and_runs_after() -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        assert h.router.press("b", source="control socket")[0] == "queued"
        assert h.router.press("b")[0] == "already queued"
        assert h.router.status()["queued"] == ["B"]
        await h.answered_then("")
        await h.next_visit()
        assert h.router.current_request is not None and h.router.current_request.apartment == B
        await h.answered_then("")
        tg.cancel_scope.cancel()
    assert h.calls.dialed == ["sip:a@h", "sip:b@h"]
    assert ("BUTTON_PRESSED", "control socket: queued") in h.rec.events


async def test_a_refused_visitor_hears_why() -> None:
    h = Harness(replace(CONFIG, timing=replace(CONFIG.timing, other_apartment_press="refuse")))
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        assert h.router.press("b") == ("refused: another visit in progress", "-")
        await h.rec.until("PLAYBACK_START")  # the running visit's "waiting"
        with anyio.fail_after(5):
            while Prompt.PANEL_BUSY not in h.speaker.played:
                await h.rec.changed.wait()  # the refusal plays on the same speaker, after it
        await h.answered_then("")
        tg.cancel_scope.cancel()
    assert h.calls.dialed == ["sip:a@h"]
    at = h.rec.events.index(("BUTTON_PRESSED", "refused: another visit in progress"))
    assert h.rec.events[at + 1] == ("PRESS_REFUSED", "another visit in progress")


async def test_a_full_queue_refuses_and_says_so() -> None:
    apartments = tuple(Apartment(name=f"{i}", buttons=(f"{i}",), residents=("sip:x@h",)) for i in range(10))
    config = replace(CONFIG, buttons=tuple(ButtonConfig(f"{i}", i) for i in range(10)), apartments=apartments)
    h = Harness(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("0")
        await h.next_visit()
        for i in range(1, QUEUE_LIMIT + 1):
            assert h.router.press(f"{i}")[0] == "queued"
        for _ in range(3):  # a storm on the refused button: each press logged, the visitor told once
            assert h.router.press("9") == ("refused: queue full", "-")
        await h.rec.until("PRESS_REFUSED", 3)
        with anyio.fail_after(5):
            while Prompt.PANEL_BUSY not in h.speaker.played:
                await h.rec.changed.wait()
        await anyio.wait_all_tasks_blocked()
        assert h.speaker.played.count(Prompt.PANEL_BUSY) == 1
        tg.cancel_scope.cancel()


async def test_digits_typed_on_one_call_are_never_read_on_the_next() -> None:
    # Apartment A's code is 4711. Before: "47" on one call + "11" on the next opened the door.
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        first = await h.answered_then("47")
        h.router.press("a")
        await h.next_visit()
        second = await h.answered_then("11")
        h.router.press("a")
        await h.next_visit()
        third = await h.answered_then("4711", hang_up=False)  # the right code after leftovers: opens
        tg.cancel_scope.cancel()
    assert (first.outcome, second.outcome) == (Outcome.NOT_OPENED, Outcome.NOT_OPENED)
    assert third.outcome is Outcome.DOOR_OPENED and h.door.opens == 1
    assert "CODE_REJECTED" not in h.rec.names()  # no partial code counted toward the lockout


async def test_digits_from_a_call_the_visit_does_not_own_are_ignored() -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        await h.rec.until("CALL_START")
        stranger = call(99, "sip:mallory@h")
        h.router.sip_event(CallAnswered(h.handle()))
        h.digits(stranger, "4711")
        await h.answered_then("", hang_up=True)
        tg.cancel_scope.cancel()
    assert h.door.opens == 0 and h.done[-1][0].outcome is Outcome.NOT_OPENED


async def test_lockout_survives_between_visits_and_unknown_buttons_start_nothing() -> None:
    h = Harness(replace(CONFIG, timing=replace(CONFIG.timing, wrong_code_limit=1, lockout_seconds=600)))
    assert h.router.press("zzz") == ("unknown button", "-")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        await h.answered_then("0000")  # wrong: locks apartment A out
        h.router.press("a")
        await h.next_visit()
        result = await h.answered_then("4711")
        tg.cancel_scope.cancel()
    assert result.outcome is Outcome.NOT_OPENED and h.door.opens == 0
    assert result.state.lockout.locked(1.0)


async def test_outcome_is_logged_once_also_for_a_cancelled_visit() -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        await h.answered_then("4711", hang_up=False)
        h.router.press("b")
        await h.next_visit()
        assert h.router.cancel_current()
        with anyio.fail_after(5):
            await h.router.wait_completed(2)
        tg.cancel_scope.cancel()
    outcomes = [text for name, text in h.rec.events if name == "OUTCOME"]
    assert outcomes == ["door_opened", "cancelled"]
    assert [r.outcome for r, _ in h.done] == [Outcome.DOOR_OPENED, Outcome.CANCELLED]


async def test_inbound_caller_gets_one_visit_and_a_second_is_hung_up() -> None:
    h = Harness()
    concierge, second = CallHandle(50, 0, "incoming", "sip:c@h"), CallHandle(51, 1, "incoming", "sip:d@h")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.sip_event(IncomingCall(concierge, "sip:c@h", allowed=True))
        await h.next_visit()
        h.router.sip_event(IncomingCall(second, "sip:d@h", allowed=True))
        await anyio.wait_all_tasks_blocked()  # the stray hang-up is a task of the router's
        assert h.calls.hung_up == [second]
        h.digits(concierge, "9")
        with anyio.fail_after(5):
            await h.router.wait_completed(1)
        tg.cancel_scope.cancel()
    (result, request) = h.done[0]
    assert request.apartment.name == INBOUND and request.apartment.codes == ("9",)
    assert result.outcome is Outcome.DOOR_OPENED and result.answered_by == "sip:c@h"


async def test_registration_down_shows_the_fault_and_the_next_visit_is_out_of_service() -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.sip_event(RegistrationChanged(False, 503, "Service Unavailable"))
        assert h.rec.leds == [LedPattern.FAULT] and not h.router.registered
        h.router.press("a")
        with anyio.fail_after(5):
            await h.router.wait_completed(1)
        tg.cancel_scope.cancel()
    assert h.done[0][0].outcome is Outcome.OUT_OF_SERVICE and h.calls.dialed == []


async def test_hw_events_are_forwarded_as_presses_or_logged() -> None:
    h = Harness()
    h.router.hw_event(TamperTriggered(at=1.0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.hw_event(ButtonPressed("a", at=2.0))
        await h.next_visit()
        assert h.started[0].pressed_at == 2.0
        tg.cancel_scope.cancel()
    assert h.rec.events[0] == ("TAMPERTRIGGERED", "")


async def test_after_reconfigure_the_next_visit_plays_the_new_prompts_the_running_one_keeps_its_own() -> None:
    h = Harness()
    new_speaker = FakeSpeaker("after reload")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.next_visit()
        h.router.reconfigure(CONFIG, replace(h.ports, speaker=new_speaker))
        await h.answered_then("")
        h.router.press("a")
        await h.next_visit()
        await h.answered_then("")
        tg.cancel_scope.cancel()
    # The first visit began and ended on the old speaker; the second visit's first word is the new one's.
    assert h.speaker.played == [Prompt.WAITING, Prompt.DOOR_NOT_OPENED]
    assert new_speaker.played == [Prompt.WAITING, Prompt.DOOR_NOT_OPENED]


async def test_the_visit_start_is_told_once_its_calls_are_dialled() -> None:
    """on_start (the app writes the history row's first version there) waits for the start's dials: the INVITE must
    not wait behind that bookkeeping (issue 18). An inbound visit is answered by its start: the start is told before
    the answer's progress, so the later, fuller row is the one that stays."""
    told: list[str] = []
    h = Harness()
    h.router._on_start = lambda request: told.append(f"start {request.visit}, dialled {h.calls.dialed}")
    h.router._on_progress = lambda result, request: told.append(f"progress {request.visit}: {result.answered_by}")
    concierge = CallHandle(50, 0, "incoming", "sip:c@h")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        await h.rec.until("CALL_START", 1)
        await h.answered_then("")
        h.router.sip_event(IncomingCall(concierge, "sip:c@h", allowed=True))
        with anyio.fail_after(5):
            while len(told) < 4:
                await anyio.sleep(0.001)
        h.router.cancel_current()
        with anyio.fail_after(5):
            await h.router.wait_completed(2)
        tg.cancel_scope.cancel()
    assert told[:4] == [
        "start v0, dialled ['sip:a@h']",
        "progress v0: sip:a@h",
        "start v1, dialled ['sip:a@h']",  # inbound: nothing to dial
        "progress v1: sip:c@h",
    ]


async def test_the_press_that_starts_a_visit_is_logged_once_its_calls_are_dialled_and_in_press_order() -> None:
    """The press starting the next visit is handed to the visit log with the visit's start, once its calls are
    dialled (issue 18): BUTTON_PRESSED then CALL_START. A press that comes meanwhile is logged after it: the log
    keeps the order of the presses."""
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.press("a")
        held = list(h.rec.names())  # the visit has not started: nothing handed over yet
        h.router.press("b")  # another apartment, queued behind it
        await h.rec.until("CALL_START", 1)
        tg.cancel_scope.cancel()
    assert held == []
    assert h.rec.events[:3] == [("BUTTON_PRESSED", "started"), ("BUTTON_PRESSED", "started"), ("CALL_START", "stage 0")]
    assert h.rec.visits[:3] == ["v0", "v1", "v0"]
