"""The visit runner with fakes injected through its constructor: timers, cancellation, teardown."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import Apartment, TimingConfig
from daemon.errors import CallGoneError
from daemon.flow.events import Dtmf, LegAnswered, LegEnded, Start
from daemon.flow.machine import new_visit
from daemon.flow.runner import VisitRunner

pytestmark = pytest.mark.anyio

APT = Apartment(name="101", buttons=("101",), residents=("sip:a@h", "sip:b@h"), codes=("12",))
TIMING = TimingConfig(ring_timeout_seconds=5, hangup_after_open_seconds=0.2, max_call_seconds=30)


class FakeCalls:
    def __init__(self) -> None:
        self.dialed: list[str] = []
        self.hung_up: list[Hashable] = []
        self.ended: set[Hashable] = set()

    async def dial(self, uri: str) -> Hashable:
        self.dialed.append(uri)
        return ("call", len(self.dialed))

    async def hangup(self, handle: Hashable) -> None:
        if handle in self.ended:
            raise CallGoneError("gone")
        self.hung_up.append(handle)

    async def play(self, handle: Hashable, wav: Path) -> None:
        pass

    async def connect_audio(self, handle: Hashable) -> None:
        return None  # no talk task to run


class FakeSpeaker:
    def __init__(self) -> None:
        self.played: list[str] = []
        self.stopped = 0

    async def play_prompt(self, name: str) -> None:
        self.played.append(name)
        try:
            await anyio.sleep(0.05)
        except anyio.get_cancelled_exc_class():
            self.stopped += 1
            raise


class FakeDoor:
    def __init__(self) -> None:
        self.opens = 0
        self.releases = 0

    def open(self) -> None:
        self.opens += 1

    def release(self) -> None:
        self.releases += 1


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.leds: list[str] = []

    def event(self, visit: str, name: str, target: str = "", text: str = "", **extra: object) -> None:
        self.events.append((name, text))

    def show(self, pattern: str) -> None:
        self.leds.append(pattern)

    def call_wav(self, name: str) -> Path:
        return Path(name)


def make(
    apt: Apartment = APT, timing: TimingConfig = TIMING
) -> tuple[VisitRunner, FakeCalls, FakeSpeaker, FakeDoor, Recorder]:
    calls, speaker, door, rec = FakeCalls(), FakeSpeaker(), FakeDoor(), Recorder()
    runner = VisitRunner(
        "v1", new_visit(apt, timing), calls=calls, speaker=speaker, door=door, leds=rec, prompts=rec, visit_log=rec
    )
    return runner, calls, speaker, door, rec


async def test_code_opens_the_door_and_the_scheduled_hang_up_fires() -> None:
    runner, calls, speaker, door, rec = make()
    async with anyio.create_task_group() as tg:

        async def visit() -> None:
            result = await runner.run(Start(sip_ready=True))
            assert result.outcome == "door_opened"

        tg.start_soon(visit)
        await anyio.sleep(0.01)
        runner.post(LegAnswered(1))
        runner.post(Dtmf(1, "1", "rfc2833", 1.0))
        runner.post(Dtmf(1, "2", "rfc2833", 1.0))
    assert calls.dialed == ["sip:a@h", "sip:b@h"]
    assert door.opens == 1
    # Leg 0 cancelled when leg 1 answered; leg 1 hung up by the timer after opening.
    assert calls.hung_up == [("call", 1), ("call", 2)]
    assert speaker.played[0] == "waiting" and "door_open" in speaker.played
    assert rec.leds[-1] == "idle"


async def test_resident_hanging_up_first_cancels_the_scheduled_hang_up() -> None:
    runner, calls, _, door, rec = make()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(True))
            await anyio.sleep(0.01)
            runner.post(LegAnswered(0))
            runner.post(Dtmf(0, "1", "info", 1.0))
            runner.post(Dtmf(0, "2", "info", 1.0))
            await anyio.sleep(0.01)
            calls.ended.add(("call", 1))
            runner.post(LegEnded(0, 200, "BYE"))
    await anyio.sleep(0.4)  # longer than hangup_after_open: a leaked timer would hang up now
    assert ("call", 1) not in calls.hung_up
    assert runner.result.outcome == "door_opened" and door.opens == 1
    assert ("OUTCOME", "door_opened") in rec.events


async def test_cancelling_a_visit_hangs_up_every_leg_and_stops_the_prompt() -> None:
    runner, calls, speaker, _, _ = make(timing=replace(TIMING, ring_timeout_seconds=60))
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, Start(True))
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert sorted(calls.hung_up) == [("call", 1), ("call", 2)]  # type: ignore[type-var]
    assert speaker.stopped == 1


async def test_ring_timeout_reaches_nobody_answered() -> None:
    runner, calls, speaker, _, _ = make(timing=replace(TIMING, ring_timeout_seconds=0.05))
    with anyio.fail_after(5):
        result = await runner.run(Start(True))
    assert result.outcome == "no_answer"
    assert speaker.played[-1] == "nobody_answered"
    assert len(calls.hung_up) == 2


class ExplodingSpeaker(FakeSpeaker):
    """A port failing in a way nobody planned for (not an IntercomError)."""

    async def play_prompt(self, name: str) -> None:
        if name == "door_open":
            raise RuntimeError("driver bug")
        await super().play_prompt(name)


async def test_an_unexpected_error_releases_the_relay_and_hangs_up_every_leg() -> None:
    calls, door, rec = FakeCalls(), FakeDoor(), Recorder()
    runner = VisitRunner(
        "v1",
        new_visit(APT, TIMING),
        calls=calls,
        speaker=ExplodingSpeaker(),
        door=door,
        leds=rec,
        prompts=rec,
        visit_log=rec,
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, Start(True))
            await anyio.sleep(0.01)
            runner.post(LegAnswered(0))
            runner.post(Dtmf(0, "1", "rfc2833", 1.0))
            runner.post(Dtmf(0, "2", "rfc2833", 1.0))  # opens: the "door open" prompt then blows up
    assert door.opens == 1 and door.releases == 1  # fail-secure: released on the error path
    assert ("call", 1) in calls.hung_up and ("call", 2) in calls.hung_up
    assert runner.result.outcome == "error"
    assert ("OUTCOME", "error") in rec.events
