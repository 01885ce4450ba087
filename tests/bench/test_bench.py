"""Hardware-in-loop bench: the same tests over gpiozero's MockFactory (everywhere, CI included) and over
real pins on a Raspberry Pi, modelled on gpiozero's ``tests/test_real_pins.py``.

Wiring on the Pi (BCM numbers of your choice, given in the environment; see docs/bench.md):

* ``INTERCOM_BENCH_PRESS_OUT`` -> jumper -> ``INTERCOM_BENCH_BUTTON_IN``: the output pulls the input low,
  exactly as a doorbell (or door contact, or tamper switch) closing to ground would.
* ``INTERCOM_BENCH_RELAY_OUT`` -> jumper -> ``INTERCOM_BENCH_RELAY_SENSE``: the sense input reads the level
  the relay driver would see. No relay module or lock needs to be connected (and none should be).
* ``INTERCOM_BENCH_FACTORY``: the gpiozero pin factory for the real half (``lgpio`` on current Pi OS).

Run: ``INTERCOM_BENCH_FACTORY=lgpio INTERCOM_BENCH_PRESS_OUT=20 INTERCOM_BENCH_BUTTON_IN=21
INTERCOM_BENCH_RELAY_OUT=26 INTERCOM_BENCH_RELAY_SENSE=19 .venv/bin/python -m pytest tests/bench -v``.
A lock file (``INTERCOM_BENCH_LOCK``, default ``/tmp/intercom-bench.lock``) keeps two runs off the bench.
Without the variables the ``bench_real`` half is skipped and the mock half still runs.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from hw.events import ButtonPressed, DoorClosed, DoorHeldOpen, DoorOpened, KeyPressed, TamperTriggered
from hw.inputs import DoorbellButton, DoorContact, TamperSwitch
from hw.keypad import ButtonKeypad
from hw.leds import PATTERNS, LedState, StatusLeds
from hw.relay import Relay
from hw.settings import ButtonConfig, DoorContactConfig, LedConfig, RelayConfig, TamperConfig
from tests.bench.conftest import Bench
from tests.hw.helpers import Recorder, wait_until


def test_press_gives_one_press_event(bench: Bench) -> None:
    recorder = Recorder()
    bench.presser()
    button = DoorbellButton(
        ButtonConfig("bench", bench.button_in, min_press_ms=50, holdoff_ms=500),
        pin_factory=bench.factory,
        post=recorder.post,
    )
    try:
        before = time.monotonic()
        bench.press(0.08)
        (event,) = recorder.wait_for(ButtonPressed)
        time.sleep(0.1)
        assert recorder.events == [event]
        assert before <= event.at < before + bench.tolerance
        assert button.last_post_latency is not None and button.last_post_latency < bench.tolerance
    finally:
        button.close()


def test_noise_shorter_than_the_minimum_gives_nothing(bench: Bench) -> None:
    recorder = Recorder()
    bench.presser()
    button = DoorbellButton(
        ButtonConfig("bench", bench.button_in, min_press_ms=50), pin_factory=bench.factory, post=recorder.post
    )
    try:
        for _ in range(10):
            bench.press(0.01)
            time.sleep(0.01)
        time.sleep(0.1)
        assert recorder.events == []
    finally:
        button.close()


async def _measure_pulse(bench: Bench, relay: Relay, seconds: float) -> float:
    sense = bench.sense()
    fell: list[float] = []
    sense.when_deactivated = lambda: fell.append(time.monotonic())
    try:
        assert not sense.is_active
        start = time.monotonic()
        relay.open(seconds)
        assert sense.is_active, "the sense input does not follow the relay output (jumper?)"
        await wait_until(lambda: fell, seconds + 2)
        return fell[0] - start
    finally:
        sense.close()


def test_a_key_of_a_keypad_wired_one_button_per_key_is_read_through_the_jumper(bench: Bench) -> None:
    """PRESS_OUT -> BUTTON_IN as the '5' key of a keypad wired one GPIO per key: one KeyPressed per press."""
    recorder = Recorder()
    bench.presser()
    keypad = ButtonKeypad({"5": bench.button_in}, pin_factory=bench.factory, post=recorder.post, holdoff_ms=100)
    try:
        bench.press(0.08)
        time.sleep(0.2)  # past the key's hold-off: a second press of the same key counts
        bench.press(0.08)
        presses = recorder.wait_for(KeyPressed, 2)
        time.sleep(0.1)
        assert [e.key for e in presses] == ["5", "5"] and len(recorder.events) == 2  # type: ignore[union-attr]
    finally:
        keypad.close()


async def test_relay_pulse_length_within_tolerance(bench: Bench) -> None:
    relay = Relay(RelayConfig(pin=bench.relay_out), pin_factory=bench.factory)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await anyio.lowlevel.checkpoint()
            lengths = [await _measure_pulse(bench, relay, 0.25) for _ in range(3)]
            tg.cancel_scope.cancel()
    finally:
        relay.close()
    assert all(abs(x - 0.25) <= bench.tolerance for x in lengths), lengths


async def test_relay_pulse_ends_on_time_while_the_loop_is_blocked(bench: Bench) -> None:
    # The pulse's end belongs to the relay's timer thread: a loop stuck in synchronous work (here: this test waiting
    # on a threading.Event without awaiting) must not keep the door unlocked.
    relay = Relay(RelayConfig(pin=bench.relay_out), pin_factory=bench.factory)
    sense = bench.sense()
    fell = threading.Event()
    fell_at: list[float] = []

    def on_fall() -> None:
        fell_at.append(time.monotonic())
        fell.set()

    sense.when_deactivated = on_fall
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await anyio.lowlevel.checkpoint()
            start = time.monotonic()
            assert relay.open(0.25) is True
            assert fell.wait(2.0), "the relay was not released while the loop was blocked"
            tg.cancel_scope.cancel()
    finally:
        sense.close()
        relay.close()
    assert abs(fell_at[0] - start - 0.25) <= bench.tolerance, fell_at[0] - start


_CRASHER = textwrap.dedent("""
    import os, signal, sys
    from hw.settings import GpioConfig
    from gpiozero import DigitalOutputDevice
    from hw.pins import make_pin_factory
    out = DigitalOutputDevice(int(sys.argv[1]), initial_value=True,
                              pin_factory=make_pin_factory(GpioConfig(), environ={"GPIOZERO_PIN_FACTORY": sys.argv[2]}))
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no finally, no close, the pin left energized
""")


def test_relay_released_after_a_crash_restart(bench: Bench) -> None:
    sense = bench.sense()  # first: setting its pull-down must not hide the level the crash left
    try:
        if isinstance(bench.factory, MockFactory):
            # One process: leave the pin driven high by a device that is never closed, as a crash would.
            left = DigitalOutputDevice(bench.relay_out, initial_value=True, pin_factory=bench.factory)
            bench.factory.release_all(left)
        else:
            proc = subprocess.run(
                [sys.executable, "-c", _CRASHER, str(bench.relay_out), bench.kind],
                cwd=Path(__file__).parents[2],
                check=False,
                timeout=30,
            )
            assert proc.returncode == -9
        left_high = sense.is_active
        relay = Relay(RelayConfig(pin=bench.relay_out), pin_factory=bench.factory)
        try:
            assert not sense.is_active and not relay.energized
        finally:
            relay.close()
    finally:
        sense.close()
    if isinstance(bench.factory, MockFactory):
        assert left_high  # the scenario really started from an energized pin


def test_door_held_open_raises_the_alarm(bench: Bench) -> None:
    recorder = Recorder()
    presser = bench.presser()
    door = DoorContact(
        DoorContactConfig(pin=bench.button_in, held_open_seconds=0.3), pin_factory=bench.factory, post=recorder.post
    )
    try:
        presser.off()  # the reed contact closes: door open
        opened = recorder.wait_for(DoorOpened)[0]
        alarm = recorder.wait_for(DoorHeldOpen, timeout=3)[0]
        presser.on()
        recorder.wait_for(DoorClosed)
        assert abs(alarm.at - opened.at - 0.3) <= bench.tolerance
    finally:
        presser.on()
        door.close()


async def test_tamper_blocks_the_relay(bench: Bench) -> None:
    recorder = Recorder()
    presser = bench.presser()
    relay = Relay(RelayConfig(pin=bench.relay_out, pulse_seconds=5), pin_factory=bench.factory)
    tamper = TamperSwitch(
        TamperConfig(pin=bench.button_in, block_seconds=0.3),
        pin_factory=bench.factory,
        post=recorder.post,
        on_tamper=lambda: relay.block(0.3),
    )
    sense = bench.sense()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await anyio.lowlevel.checkpoint()
            relay.open()
            assert sense.is_active
            presser.off()
            await wait_until(lambda: recorder.of(TamperTriggered), 2)
            assert not sense.is_active and relay.blocked
            assert relay.open() is False and not sense.is_active
            presser.on()
            await anyio.sleep(0.35)
            assert relay.open(0.05) is True and sense.is_active
            tg.cancel_scope.cancel()
        assert not sense.is_active
    finally:
        presser.on()
        sense.close()
        tamper.close()
        relay.close()


@pytest.mark.parametrize("state", list(LedState))
def test_leds_show_the_right_pattern(bench: Bench, state: LedState) -> None:
    # The status LED on RELAY_OUT, read back through the jumper on RELAY_SENSE.
    leds = StatusLeds({"status": LedConfig(bench.relay_out)}, pin_factory=bench.factory)
    sense = bench.sense()
    edges: list[tuple[float, bool]] = []
    sense.when_activated = lambda: edges.append((time.monotonic(), True))
    sense.when_deactivated = lambda: edges.append((time.monotonic(), False))
    pattern = PATTERNS[state]["status"]
    try:
        leds.show(state)
        if pattern.steady is not None:
            time.sleep(0.05)
            assert sense.is_active is pattern.steady
        else:
            time.sleep(2.5 * (pattern.on_time + pattern.off_time))
            spans = [(b[0] - a[0], a[1]) for a, b in itertools.pairwise(edges)][1:]
            on = [d for d, lit in spans if lit]
            off = [d for d, lit in spans if not lit]
            assert on and off, edges
            assert all(abs(d - pattern.on_time) <= bench.tolerance for d in on), on
            assert all(abs(d - pattern.off_time) <= bench.tolerance for d in off), off
    finally:
        leds.close()
        sense.close()
