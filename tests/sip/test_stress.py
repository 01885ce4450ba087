"""200 calls, each with a hang-up timer scheduled by the loop while the far end hangs up at random first.

Checks: the process keeps a constant thread count (no thread per call or per operation), no hang-up ever
ends another call than the one it names, every timer is either fired or cancelled when its call ends.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from daemon.bridge import LoopBridge
from daemon.errors import CallGoneError, DialError
from daemon.sip import CallEnded, SipEngine
from tests.sip.conftest import make_config
from tests.support.peers import Sipp

pytestmark = [pytest.mark.peers, pytest.mark.slow]

CALLS = 200
PJ_ETOOMANY = 70010
CONCURRENCY = 4  # pjproject's default PJSUA_MAX_CALLS (the PyPI wheel's): the engine's own limit is tested elsewhere


def native_threads() -> int:
    """This process's native threads but pjmedia's conference clock: one for all calls, which runs only while a
    call exists (docs/pjsua2.md, "The conference clock runs only with a call"), never one per call."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            count += Path(f"/proc/self/task/{task}/comm").read_text().strip() != "clock"
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return count


async def test_200_calls_with_racing_hangups(tmp_path: Path, bridge: LoopBridge) -> None:
    rng = random.Random(2833)
    with Sipp(tmp_path, "uas_answer_random_bye") as far:
        async with SipEngine(make_config(max_calls=CONCURRENCY), bridge) as engine:
            baseline = (threading.active_count(), native_threads())
            samples: list[tuple[int, int]] = []
            ended: dict[int, CallEnded] = {}
            end_signals: dict[int, anyio.Event] = {}
            timers: dict[int, anyio.CancelScope] = {}
            hung_up_by_us: set[int] = set()
            stats = {"fired": 0, "cancelled": 0, "gone": 0, "slot_waits": 0}

            async def dispatch() -> None:
                async for event in engine.events:
                    if isinstance(event, CallEnded):
                        generation = event.handle.generation
                        assert generation not in ended, "a call ended twice"
                        ended[generation] = event
                        end_signals.setdefault(generation, anyio.Event()).set()
                        if (scope := timers.pop(generation, None)) is not None:
                            scope.cancel()  # the call is over: its scheduled hang-up must not fire

            async def one_call(limiter: anyio.CapacityLimiter) -> None:
                async with limiter:
                    while True:
                        try:
                            handle = await engine.dial(far.uri(), ring_timeout=5)
                            break
                        except DialError as exc:
                            # pjsua frees a call slot a little after DISCONNECTED: wait for it.
                            if exc.pj_status != PJ_ETOOMANY:
                                raise
                            stats["slot_waits"] += 1
                            await anyio.sleep(0.02)
                    generation = handle.generation
                    done = end_signals.setdefault(generation, anyio.Event())
                    with anyio.CancelScope() as scope:
                        if done.is_set():
                            scope.cancel()
                        timers[generation] = scope
                        await anyio.sleep(rng.uniform(0.05, 0.8))
                        timers.pop(generation, None)
                        if scope.cancel_called:
                            # The far end's BYE was handled in the instant the timer woke: the cancellation
                            # lands at the next await, so it counts as cancelled, not fired.
                            await anyio.lowlevel.checkpoint()
                        stats["fired"] += 1
                        try:
                            await engine.hangup(handle)
                            hung_up_by_us.add(generation)
                        except CallGoneError:
                            stats["gone"] += 1  # the far end's BYE won the race: correct, nothing hit
                    if scope.cancelled_caught:
                        stats["cancelled"] += 1
                    with anyio.fail_after(10):
                        await done.wait()
                    samples.append((threading.active_count(), native_threads()))

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(dispatch)
                    limiter = anyio.CapacityLimiter(CONCURRENCY)
                    async with anyio.create_task_group() as calls:
                        for _ in range(CALLS):
                            calls.start_soon(one_call, limiter)
                    tg.cancel_scope.cancel()

            assert len(ended) == CALLS
            assert not timers, "a timer outlived its call"
            assert stats["fired"] + stats["cancelled"] == CALLS
            by_us = {g for g, e in ended.items() if e.by_us}
            assert by_us == hung_up_by_us, "a hang-up ended a call it did not name"
            assert stats["cancelled"] > 0 and len(hung_up_by_us) > 0  # both sides won some races
            assert {s for s in samples} == {baseline}, f"thread count moved: {set(samples)} vs {baseline}"
            assert engine.fault_counters == (0, 0)
            print(f"\nstress: {stats}, by_us={len(by_us)}, threads={baseline}")
