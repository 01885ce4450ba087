"""The door relay: pulses timed by its own thread, extension, blocking, refusals, and fail-secure on every path."""

from __future__ import annotations

import math
import threading
import time

import anyio
import anyio.lowlevel
import pytest
from gpiozero.pins.mock import MockFactory

from hw._timing import Dispatcher
from hw.errors import HardwareError
from hw.events import RelayChanged
from hw.relay import MAX_PULSE_S, Relay
from hw.settings import RelayConfig
from tests.hw.helpers import Recorder, wait_until

PIN = 27


def level(factory: MockFactory) -> bool:
    return bool(factory.pin(PIN).state)


async def test_pulse_length_within_tolerance(factory: MockFactory, recorder: Recorder) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=0.2), pin_factory=factory, post=recorder.post)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        factory.pin(PIN).clear_states()
        assert relay.open() is True
        await wait_until(lambda: len(recorder.of(RelayChanged)) == 2, 2)
        tg.cancel_scope.cancel()
    relay.close()
    states = factory.pin(PIN).states
    assert [s.state for s in states] == [False, True, False]
    assert 0.2 <= states[2].timestamp < 0.215, states
    on, off = recorder.of(RelayChanged)
    assert (on.energized, off.energized) == (True, False)  # type: ignore[union-attr]


async def test_second_open_extends_never_stacks(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=0.2), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        start = time.monotonic()
        relay.open()
        await anyio.sleep(0.1)
        relay.open()  # ends at 0.3, not 0.4 (stacked) nor 0.2 (ignored)
        relay.open(0.05)  # shorter: never shortens the running pulse
        await wait_until(lambda: not relay.energized, 2)
        length = time.monotonic() - start
        tg.cancel_scope.cancel()
    assert 0.3 <= length < 0.33
    assert [s.state for s in factory.pin(PIN).states].count(True) == 1


@pytest.mark.parametrize("active_high", [True, False])
async def test_polarity_and_released_at_construction(factory: MockFactory, active_high: bool) -> None:
    relay = Relay(RelayConfig(pin=PIN, active_high=active_high, pulse_seconds=0.05), pin_factory=factory)
    assert level(factory) is (not active_high)  # de-energized level at once
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        relay.open()
        assert level(factory) is active_high
        tg.cancel_scope.cancel()
    assert level(factory) is (not active_high) and not relay.energized
    relay.close()


async def test_cancelling_run_mid_pulse_releases(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=10), pin_factory=factory)
    with anyio.move_on_after(0.05):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await anyio.lowlevel.checkpoint()
            relay.open()
            await anyio.sleep(1)
    assert not relay.energized and not level(factory)
    assert not relay.running


async def test_open_without_run_is_refused_and_stays_locked(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    with pytest.raises(HardwareError, match="not running"):
        relay.open()
    assert not level(factory)
    relay.close()


async def test_close_releases_and_is_idempotent(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=10), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        relay.open()
        relay.close()
        assert not relay.energized and not level(factory)
        tg.cancel_scope.cancel()
    relay.close()


def test_crash_restart_releases_a_relay_left_energized(factory: MockFactory) -> None:
    # The previous process died mid-pulse: no finally ran, the pin is still driven to the energized level.
    pin = factory.pin(PIN)
    pin.function = "output"
    pin.state = True
    restarted = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    assert not level(factory) and not restarted.energized
    restarted.close()


async def test_block_releases_and_refuses_until_it_expires(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=10), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        relay.open()
        relay.block(0.1)
        assert not level(factory) and relay.blocked
        assert relay.open(0.05) is False and not level(factory)
        await anyio.sleep(0.11)
        assert relay.open(0.05) is True and level(factory)
        tg.cancel_scope.cancel()
    relay.close()


async def test_open_from_a_foreign_thread_ends_on_time(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=0.05), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        opened: list[bool] = []
        thread = threading.Thread(target=lambda: opened.append(relay.open()))
        thread.start()
        await wait_until(lambda: opened, 2)
        await wait_until(lambda: not relay.energized, 2)
        thread.join()
        tg.cancel_scope.cancel()
    assert opened == [True] and not level(factory)
    relay.close()


async def test_a_second_run_is_refused(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        with pytest.raises(HardwareError, match="already running"):
            await relay.run()
        tg.cancel_scope.cancel()
    relay.close()


async def test_pulse_ends_on_time_while_the_loop_is_blocked(factory: MockFactory, recorder: Recorder) -> None:
    # A wedged or busy loop must not keep the door unlocked: the pulse's end is the relay's own thread's business.
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=0.1), pin_factory=factory, post=recorder.post)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        factory.pin(PIN).clear_states()
        assert relay.open() is True
        # Block the loop thread itself (a synchronous wait, no await) until the release event arrives.
        on, off = recorder.wait_for(RelayChanged, 2, timeout=2.0)
        assert not relay.energized and not level(factory)
        tg.cancel_scope.cancel()
    relay.close()
    assert (on.energized, off.energized) == (True, False)  # type: ignore[union-attr]
    assert 0.1 <= factory.pin(PIN).states[2].timestamp < 0.115


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan, math.inf, 1e9, MAX_PULSE_S + 1])
async def test_an_unbounded_or_empty_pulse_is_refused_not_raised(factory: MockFactory, seconds: float) -> None:
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        assert relay.open(seconds) is False
        assert not relay.energized and not level(factory)
        tg.cancel_scope.cancel()
    relay.close()


async def test_open_after_close_raises_and_stays_locked(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        relay.close()
        with pytest.raises(HardwareError, match=r"closed|timer is stopped"):
            relay.open()
        tg.cancel_scope.cancel()
    assert not relay.energized


async def test_events_leave_in_the_order_the_pin_changed(factory: MockFactory, recorder: Recorder) -> None:
    relay = Relay(RelayConfig(pin=PIN, pulse_seconds=10), pin_factory=factory, post=recorder.post)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        for _ in range(50):
            relay.open()
            relay.release()
        await wait_until(lambda: len(recorder.of(RelayChanged)) == 100, 2)
        tg.cancel_scope.cancel()
    relay.close()
    assert [e.energized for e in recorder.of(RelayChanged)] == [True, False] * 50  # type: ignore[union-attr]


async def test_a_nan_block_blocks_instead_of_being_ignored(factory: MockFactory) -> None:
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        relay.block(math.nan)
        assert relay.blocked and relay.open() is False and not level(factory)
        tg.cancel_scope.cancel()
    relay.close()


async def test_open_with_its_timer_stopped_raises_and_stays_locked(factory: MockFactory) -> None:
    timer = Dispatcher("test-relay-timer")
    relay = Relay(RelayConfig(pin=PIN), pin_factory=factory, dispatcher=timer)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        await anyio.lowlevel.checkpoint()
        timer.close()  # the panel is closing: nothing would end a pulse now
        with pytest.raises(HardwareError, match="timer is stopped"):
            relay.open()
        assert not relay.energized and not level(factory)
        tg.cancel_scope.cancel()
    relay.close()
