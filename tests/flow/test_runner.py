"""The visit runner with fakes injected through its constructor: timers, cancellation, teardown."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from daemon.config import Apartment, TimingConfig
from daemon.errors import SipError
from daemon.flow.events import Dtmf, LegAnswered, LegEnded, Start
from daemon.flow.machine import new_visit
from daemon.flow.runner import VisitRunner
from daemon.flow.vocabulary import LedPattern, Outcome, Prompt
from tests.flow.fakes import FakeCalls, FakeDoor, FakeSpeaker, Recorder, call, ports

pytestmark = pytest.mark.anyio

APT = Apartment(name="101", buttons=("101",), residents=("sip:a@h", "sip:b@h"), codes=("12",))
TIMING = TimingConfig(ring_timeout_seconds=5, hangup_after_open_seconds=0.2, max_call_seconds=30)


def make(
    apt: Apartment = APT, timing: TimingConfig = TIMING, *, door: FakeDoor | None = None
) -> tuple[VisitRunner, FakeCalls, FakeSpeaker, FakeDoor, Recorder]:
    calls, speaker, door, rec = FakeCalls(), FakeSpeaker(), door or FakeDoor(), Recorder()
    runner = VisitRunner("v1", new_visit(apt, timing), ports(calls, speaker, door, rec), rec)
    return runner, calls, speaker, door, rec


async def test_code_opens_the_door_and_the_scheduled_hang_up_fires() -> None:
    runner, calls, speaker, door, rec = make()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(sip_ready=True))
            await rec.until("CALL_START", 2)
            runner.post(LegAnswered(1))
            runner.post(Dtmf(1, "1", "rfc2833", 1.0))
            runner.post(Dtmf(1, "2", "rfc2833", 1.0))
    assert runner.result.outcome is Outcome.DOOR_OPENED
    assert calls.dialed == ["sip:a@h", "sip:b@h"]
    assert door.opens == 1
    # Leg 0 cancelled when leg 1 answered; leg 1 hung up by the timer after opening.
    assert calls.hung_up == [call(1, "sip:a@h"), call(2, "sip:b@h")]
    assert speaker.played[0] is Prompt.WAITING and Prompt.DOOR_OPEN in speaker.played
    assert rec.leds[-1] is LedPattern.IDLE
    # What the result says comes from the machine's state, not from log lines.
    assert runner.result.answered_by == "sip:b@h" and runner.result.answered_at is not None
    assert runner.result.door_opened_at is not None and runner.result.door_opened_at >= runner.result.answered_at
    assert "OUTCOME" not in rec.names()  # the router logs it, once


async def test_a_refused_relay_is_never_reported_open() -> None:
    runner, calls, speaker, door, rec = make(door=FakeDoor(refuse="relay blocked by tamper"))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(sip_ready=True))
            await rec.until("CALL_START", 2)
            runner.post(LegAnswered(0))
            runner.post(Dtmf(0, "1", "rfc2833", 1.0))
            runner.post(Dtmf(0, "2", "rfc2833", 1.0))
    assert door.opens == 1
    assert runner.result.outcome is Outcome.DOOR_REFUSED and runner.result.door_opened_at is None
    assert "DOOR_OPEN" not in rec.names() and "DOOR_OPEN_REFUSED" in rec.names()
    assert Prompt.DOOR_OPEN not in speaker.played and Prompt.DOOR_NOT_OPENED in speaker.played
    assert (call(1, "sip:a@h"), "door_not_opened") in [(h, str(w)) for h, w in calls.played]


async def test_resident_hanging_up_first_cancels_the_scheduled_hang_up() -> None:
    runner, calls, _, door, rec = make()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(True))
            await rec.until("CALL_START", 2)
            runner.post(LegAnswered(0))
            runner.post(Dtmf(0, "1", "info", 1.0))
            runner.post(Dtmf(0, "2", "info", 1.0))
            await rec.until("DOOR_OPEN")
            calls.ended.add(call(1, "sip:a@h"))
            runner.post(LegEnded(0, 200, "BYE"))
    # run() returned: the visit's task group (and with it every timer) is gone, so a leaked
    # hangup_after_open timer can no longer fire; the only hang-up was of the losing leg.
    assert calls.hung_up == [call(2, "sip:b@h")]
    assert runner.result.outcome is Outcome.DOOR_OPENED and door.opens == 1


async def test_cancelling_a_visit_hangs_up_every_leg_and_stops_the_prompt() -> None:
    runner, calls, speaker, _, _ = make(timing=replace(TIMING, ring_timeout_seconds=60))
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, Start(True))
        await speaker.started.wait()
        tg.cancel_scope.cancel()
    assert sorted(calls.hung_up) == [call(1), call(2)]
    assert speaker.stopped == 1


async def test_ring_timeout_reaches_nobody_answered() -> None:
    runner, calls, speaker, _, _ = make(timing=replace(TIMING, ring_timeout_seconds=0.05))
    with anyio.fail_after(5):
        result = await runner.run(Start(True))
    assert result.outcome is Outcome.NO_ANSWER
    assert speaker.played[-1] is Prompt.NOBODY_ANSWERED
    assert len(calls.hung_up) == 2


async def test_a_dial_the_engine_refuses_is_a_local_failure_heard_as_out_of_service() -> None:
    calls, speaker, rec = (
        FakeCalls(dial_error=SipError("dial: too many calls", status=70010)),
        FakeSpeaker(),
        Recorder(),
    )
    runner = VisitRunner("v1", new_visit(APT, TIMING), ports(calls, speaker, FakeDoor(), rec), rec)
    with anyio.fail_after(5):
        result = await runner.run(Start(True))
    assert result.outcome is Outcome.DIAL_FAILED and "too many calls" in result.detail
    assert speaker.played[-1] is Prompt.OUT_OF_SERVICE and Prompt.NOBODY_ANSWERED not in speaker.played
    assert rec.names().count("DIAL_FAILED") == 2


class ExplodingSpeaker(FakeSpeaker):
    """A port failing in a way nobody planned for (not an IntercomError)."""

    async def play_prompt(self, name: Prompt) -> None:
        if name is Prompt.DOOR_OPEN:
            raise RuntimeError("driver bug")
        await super().play_prompt(name)


async def test_an_unexpected_error_releases_the_relay_and_hangs_up_every_leg() -> None:
    calls, door, rec = FakeCalls(), FakeDoor(), Recorder()
    runner = VisitRunner("v1", new_visit(APT, TIMING), ports(calls, ExplodingSpeaker(), door, rec), rec)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(True))
            await rec.until("CALL_START", 2)
            runner.post(LegAnswered(0))
            runner.post(Dtmf(0, "1", "rfc2833", 1.0))
            runner.post(Dtmf(0, "2", "rfc2833", 1.0))  # opens: the "door open" prompt then blows up
    assert door.opens == 1 and door.releases == 1  # fail-secure: released on the error path
    assert call(1) in calls.hung_up and call(2) in calls.hung_up
    assert runner.result.outcome is Outcome.ERROR
