"""The Panel aggregate, LEDs, pin factory selection and the self-test, over MockFactory and real ALSA."""

from __future__ import annotations

import threading
import time

import anyio
import anyio.lowlevel
import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from hw.errors import HardwareError
from hw.events import ButtonPressed, ExitRequested, HwEvent, RelayChanged, TamperTriggered
from hw.leds import PATTERNS, LedState, StatusLeds
from hw.panel import Panel
from hw.pins import make_pin_factory
from hw.selftest import run_selftest
from hw.settings import (
    AudioConfig,
    ButtonConfig,
    DoorContactConfig,
    GpioConfig,
    InputConfig,
    LedConfig,
    PanelConfig,
    RelayConfig,
    TamperConfig,
)
from tests.hw.helpers import Recorder, hold, wait_until
from tests.support.alsa import AlsaCapture

CONFIG = PanelConfig(
    buttons=(ButtonConfig("101", 17, min_press_ms=20), ButtonConfig("102", 18, min_press_ms=20)),
    relay=RelayConfig(pin=27, pulse_seconds=0.1),
    exit_button=InputConfig(pin=22, min_press_ms=20),
    door_contact=DoorContactConfig(pin=23, held_open_seconds=5),
    tamper=TamperConfig(pin=24, block_seconds=0.2),
    leds={"status": LedConfig(5), "fault": LedConfig(6)},
)


class WedgedLoop:
    """An ``EventSink`` like ``EventChannel.post`` with a loop that never runs again: the first event blocks its
    caller until the test lets go. Records what reached it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list[HwEvent] = []

    def __call__(self, event: HwEvent, /) -> None:
        self.events.append(event)
        self.release.wait(10)


async def test_a_wedged_loop_delays_events_but_not_the_exit_button_or_the_pulse(factory: MockFactory) -> None:
    sink = WedgedLoop()
    with Panel(CONFIG, pin_factory=factory, post=sink) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.relay.run)
            await anyio.lowlevel.checkpoint()
            relay_pin = factory.pin(27)
            await anyio.to_thread.run_sync(hold, factory.pin(17), 0.03)  # its event wedges the delivery
            await wait_until(lambda: sink.events, 2)
            relay_pin.clear_states()
            await anyio.to_thread.run_sync(hold, factory.pin(22), 0.03)  # exit button: opens for 0.1 s
            await wait_until(lambda: len(relay_pin.states) == 3, 2)  # energized, then released on time
            assert [s.state for s in relay_pin.states] == [False, True, False]
            assert 0.1 <= relay_pin.states[2].timestamp < 0.12  # MockPin stamps the time since the previous change
            assert [type(e) for e in sink.events] == [ButtonPressed]  # the rest waits for the loop
            sink.release.set()
            await wait_until(lambda: len(sink.events) == 4, 2)
            tg.cancel_scope.cancel()
    kinds = [type(e) for e in sink.events]
    assert kinds == [ButtonPressed, RelayChanged, ExitRequested, RelayChanged], kinds


async def test_closing_the_panel_does_not_wait_for_an_event_stuck_on_its_way(factory: MockFactory) -> None:
    # The loop closes the panel; an event the outbox is handing to that same loop cannot arrive meanwhile, and
    # waiting for it (the dispatcher's 2 s join) only delayed shutdown.
    sink = WedgedLoop()
    panel = Panel(CONFIG, pin_factory=factory, post=sink)
    try:
        await anyio.to_thread.run_sync(hold, factory.pin(17), 0.03)
        await wait_until(lambda: sink.events, 2)
        started = time.monotonic()
        panel.close()
        assert time.monotonic() - started < 0.5
    finally:
        sink.release.set()
        panel.close()


async def test_panel_wires_exit_button_and_tamper_to_the_relay(factory: MockFactory, recorder: Recorder) -> None:
    with Panel(CONFIG, pin_factory=factory, post=recorder.post) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.relay.run)
            await anyio.lowlevel.checkpoint()
            await anyio.to_thread.run_sync(hold, factory.pin(22), 0.03)
            await wait_until(lambda: recorder.of(ExitRequested), 2)
            assert recorder.of(ExitRequested)[0].opened  # type: ignore[union-attr]
            assert panel.relay.energized or recorder.of(RelayChanged)
            factory.pin(24).drive_low()
            await wait_until(lambda: recorder.of(TamperTriggered), 2)
            assert panel.relay.blocked and not panel.relay.energized
            assert panel.open_door() is False
            await anyio.to_thread.run_sync(hold, factory.pin(18), 0.03)
            await wait_until(lambda: recorder.of(ButtonPressed), 2)
            tg.cancel_scope.cancel()
    assert not factory.pin(27).state
    assert recorder.of(ButtonPressed)[0].button == "102"  # type: ignore[union-attr]


def test_close_releases_every_pin(factory: MockFactory, recorder: Recorder) -> None:
    panel = Panel(CONFIG, pin_factory=factory, post=recorder.post)
    panel.close()
    panel.close()
    again = Panel(CONFIG, pin_factory=factory, post=recorder.post)  # would raise if a pin were still reserved
    again.close()


def test_a_failing_device_closes_the_half_built_panel(factory: MockFactory, recorder: Recorder) -> None:
    blocker = StatusLeds({"x": LedConfig(24)}, pin_factory=factory)  # the tamper pin is taken
    try:
        with pytest.raises(HardwareError, match="tamper"):
            Panel(CONFIG, pin_factory=factory, post=recorder.post)
        Panel(
            PanelConfig(relay=RelayConfig(pin=27)), pin_factory=factory, post=recorder.post
        ).close()  # the relay pin was freed again
    finally:
        blocker.close()


@pytest.mark.parametrize("state", list(LedState))
def test_leds_show_each_pattern(factory: MockFactory, state: LedState) -> None:
    leds = StatusLeds({"status": LedConfig(5), "fault": LedConfig(6, active_high=False)}, pin_factory=factory)
    try:
        leds.show(state)
        for name, pattern in PATTERNS[state].items():
            if pattern.steady is not None:
                assert leds.is_lit(name) is pattern.steady, name
        blinking = [n for n, p in PATTERNS[state].items() if p.steady is None]
        if blinking:
            pin = leds.pin_of("status")
            pin.clear_states()
            time.sleep(2.2 * (PATTERNS[state]["status"].on_time + PATTERNS[state]["status"].off_time))
            durations = [s.timestamp for s in pin.states[2:4]]
            expected = sorted([PATTERNS[state]["status"].on_time, PATTERNS[state]["status"].off_time])
            assert sorted(durations) == pytest.approx(expected, abs=0.06), pin.states  # gpiozero blink thread jitter
    finally:
        leds.close()


def test_pin_factory_selection() -> None:
    assert isinstance(make_pin_factory(GpioConfig("mock")), MockFactory)
    assert isinstance(make_pin_factory(GpioConfig("auto"), environ={"GPIOZERO_PIN_FACTORY": "mock"}), MockFactory)
    # This machine has no GPIO: "auto" must refuse, never fall back to mock, and say how to fix it.
    with pytest.raises(HardwareError, match='pin_factory = "mock"'):
        make_pin_factory(GpioConfig("auto"), environ={})
    with pytest.raises(HardwareError, match="lgpio"):
        make_pin_factory(GpioConfig("lgpio"))


async def test_selftest_on_a_live_mock_panel(
    factory: MockFactory, recorder: Recorder, alsa_capture: AlsaCapture
) -> None:
    # The bench jumper: relay output wired to a sense input on GPIO25.
    factory.pin(27, pin_class=MockConnectedPin, input_pin=factory.pin(25))
    with Panel(CONFIG, pin_factory=factory, post=recorder.post) as panel:
        panel.show(LedState.CALLING)
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.run)
            await anyio.lowlevel.checkpoint()
            results = await run_selftest(panel, relay_sense_pin=25, tone_seconds=0.1)
            tg.cancel_scope.cancel()
        assert panel.leds is not None and panel.leds.state is LedState.CALLING  # restored
    table = {r.check: r for r in results}
    assert all(r.passed for r in results), results
    assert set(table) == {"relay at rest", "relay sense GPIO25", "leds", "tamper", "door contact", "buttons", "speaker"}
    assert alsa_capture.last().nframes == 1600


async def test_selftest_reports_failures(factory: MockFactory, recorder: Recorder) -> None:
    config = PanelConfig(
        relay=RelayConfig(pin=27), audio=AudioConfig(output_device="no-such-card"), tamper=TamperConfig(pin=24)
    )
    with Panel(config, pin_factory=factory, post=recorder.post) as panel:
        factory.pin(24).drive_low()
        await anyio.sleep(0.05)
        results = {r.check: r for r in await run_selftest(panel)}
    assert not results["speaker"].passed and "no-such-card" in results["speaker"].detail
    assert not results["tamper"].passed


def test_a_sink_that_never_blocks_is_called_from_the_dispatcher_with_no_outbox_thread(factory: MockFactory) -> None:
    """``post_never_blocks`` (the daemon's ``EventChannel.post_soon``): no outbox thread, the press goes from the
    dispatcher that qualified it straight to the sink."""
    posted_on: list[str] = []
    recorder = Recorder()

    def sink(event: HwEvent) -> None:
        posted_on.append(threading.current_thread().name)
        recorder.post(event)

    before = {t.name for t in threading.enumerate()}
    with Panel(CONFIG, pin_factory=factory, post=sink, post_never_blocks=True) as panel:
        assert panel.outbox is None
        assert "hw-outbox" not in {t.name for t in threading.enumerate()} - before
        hold(factory.pin(17), 0.03)
        recorder.wait_for(ButtonPressed, 1, 2)
    assert posted_on == ["hw-panel"]
