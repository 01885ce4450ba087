"""The visit queue: one visit talks at a time; second presses and other apartments by config."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from daemon.config import Apartment, ButtonConfig, Config, TimingConfig
from daemon.flow.events import Dtmf, LegAnswered, LegEnded
from daemon.flow.machine import VisitState
from daemon.flow.runner import VisitResult, VisitRunner
from daemon.visits import VisitRequest, Visits
from tests.flow.test_runner import FakeCalls, FakeDoor, FakeSpeaker, Recorder

pytestmark = pytest.mark.anyio

A = Apartment(name="A", buttons=("a",), residents=("sip:a@h",), codes=("1",))
B = Apartment(name="B", buttons=("b",), residents=("sip:b@h",), codes=("2",))
CONFIG = Config(
    buttons=(ButtonConfig("a", 17), ButtonConfig("b", 18)),
    apartments=(A, B),
    timing=TimingConfig(ring_timeout_seconds=30),
)


class Harness:
    def __init__(self, config: Config) -> None:
        self.calls, self.speaker, self.rec = FakeCalls(), FakeSpeaker(), Recorder()
        self.done: list[tuple[VisitResult, VisitRequest]] = []
        self.refused: list[str] = []
        self.ids = iter(f"v{i}" for i in range(100))
        self.visits = Visits(
            config,
            self.runner,
            new_id=lambda: next(self.ids),
            sip_ready=lambda: True,
            on_done=self.on_done,
            refuse=lambda req, prompt: self.refused.append(req.apartment.name),
        )

    def runner(self, visit: str, state: VisitState) -> VisitRunner:
        return VisitRunner(
            visit,
            state,
            calls=self.calls,
            speaker=self.speaker,
            door=FakeDoor(),
            leds=self.rec,
            prompts=self.rec,
            visit_log=self.rec,
        )

    async def on_done(self, result: VisitResult, request: VisitRequest) -> None:
        self.done.append((result, request))

    async def end_current(self) -> None:
        runner = self.visits.current
        assert runner is not None
        runner.post(LegAnswered(0))
        runner.post(LegEnded(0, 200, "BYE"))
        with anyio.fail_after(5):
            await self.visits.wait_completed(len(self.done) + 1)


async def started(h: Harness) -> None:
    with anyio.fail_after(5):
        while h.visits.current is None:
            await anyio.sleep(0.005)


async def test_second_press_for_the_same_apartment_never_places_a_second_call() -> None:
    h = Harness(CONFIG)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.visits.run)
        what, visit = h.visits.press("a")
        assert (what, visit) == ("started", "v0")
        await started(h)
        assert h.visits.press("a") == ("second press", "v0")
        await anyio.sleep(0.05)
        assert h.calls.dialed == ["sip:a@h"]
        await h.end_current()
        tg.cancel_scope.cancel()
    assert [r.visit for r, _ in h.done] == ["v0"]


async def test_other_apartment_is_queued_and_runs_after() -> None:
    h = Harness(CONFIG)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.visits.run)
        h.visits.press("a")
        await started(h)
        assert h.visits.press("b")[0] == "queued"
        assert h.visits.press("b")[0] == "already queued"
        assert h.visits.status()["queued"] == ["B"]
        await h.end_current()
        await started(h)
        assert h.visits.current_request is not None and h.visits.current_request.apartment == B
        await h.end_current()
        tg.cancel_scope.cancel()
    assert h.calls.dialed == ["sip:a@h", "sip:b@h"]


async def test_other_apartment_is_refused_when_configured() -> None:
    h = Harness(replace(CONFIG, timing=replace(CONFIG.timing, other_apartment_press="refuse")))
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.visits.run)
        h.visits.press("a")
        await started(h)
        assert h.visits.press("b")[0].startswith("refused")
        assert h.refused == ["B"]
        await h.end_current()
        tg.cancel_scope.cancel()
    assert h.calls.dialed == ["sip:a@h"]


async def test_unknown_button_is_refused_and_lockout_survives_between_visits() -> None:
    h = Harness(replace(CONFIG, timing=replace(CONFIG.timing, wrong_code_limit=1, lockout_seconds=600)))
    assert h.visits.press("zzz") == ("unknown button", "-")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.visits.run)
        h.visits.press("a")
        await started(h)
        runner = h.visits.current
        assert runner is not None
        runner.post(LegAnswered(0))
        runner.post(Dtmf(0, "7", "rfc2833", anyio.current_time()))  # wrong: locks apartment A out
        runner.post(LegEnded(0, 200, "BYE"))
        with anyio.fail_after(5):
            await h.visits.wait_completed(1)
        h.visits.press("a")
        await started(h)
        assert h.visits.current is not None and h.visits.current.state.guard.locked(anyio.current_time())
        await h.end_current()
        tg.cancel_scope.cancel()
