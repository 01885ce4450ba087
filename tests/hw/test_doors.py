"""A panel with several doors: a relay per door, each door's exit button and contact its own, one door's fault
never blocking another's, and one tamper switch guarding them all."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from gpiozero.pins.mock import MockFactory

from hw.errors import HardwareError
from hw.events import DoorOpened, ExitRequested, RelayChanged
from hw.panel import Panel
from hw.selftest import run_selftest
from hw.settings import DoorConfig, DoorContactConfig, InputConfig, PanelConfig, RelayConfig, TamperConfig
from tests.hw.helpers import Recorder, hold, wait_until

pytestmark = pytest.mark.anyio

SOCIAL = DoorConfig("social", RelayConfig(27, pulse_seconds=0.2), exit_button=InputConfig(22, min_press_ms=20))
GARAGE = DoorConfig("garage", RelayConfig(25, pulse_seconds=0.2), door_contact=DoorContactConfig(23))
CONFIG = PanelConfig(doors=(SOCIAL, GARAGE), tamper=TamperConfig(24, block_seconds=0.3))


async def test_each_door_has_its_own_relay_exit_button_and_contact(factory: MockFactory, recorder: Recorder) -> None:
    with Panel(CONFIG, pin_factory=factory, post=recorder.post) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.run)
            await anyio.lowlevel.checkpoint()
            assert list(panel.relays) == ["social", "garage"] and panel.relay is panel.relays["social"]
            await anyio.to_thread.run_sync(hold, factory.pin(22), 0.05)
            await wait_until(lambda: bool(factory.pin(27).state), 2)
            assert not factory.pin(25).state  # the pedestrian gate's exit button opens that gate only
            factory.pin(23).drive_low()  # the garage door's reed contact
            await anyio.to_thread.run_sync(recorder.wait_for, DoorOpened)
            tg.cancel_scope.cancel()
    (exit_event,) = recorder.of(ExitRequested)
    (opened,) = recorder.of(DoorOpened)
    assert exit_event.door == "social" and opened.door == "garage"  # type: ignore[union-attr]
    assert {e.door for e in recorder.of(RelayChanged)} == {"social"}  # type: ignore[union-attr]


async def test_one_doors_fault_never_blocks_another_and_tamper_blocks_every_door(
    factory: MockFactory, recorder: Recorder
) -> None:
    with Panel(CONFIG, pin_factory=factory, post=recorder.post) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.run)
            await anyio.lowlevel.checkpoint()
            garage = panel.relay_for("garage")
            assert garage is not None and panel.relay_for("cellar") is None
            garage.close()  # its pin gone: a fault on this door alone
            with pytest.raises(HardwareError):
                garage.open()
            assert panel.relay_for("social").open()  # type: ignore[union-attr]
            assert factory.pin(27).state
            panel.release_all()
            assert not factory.pin(27).state
            factory.pin(24).drive_low()  # the cover opened
            await wait_until(lambda: panel.relays["social"].blocked, 2)
            assert not panel.relays["social"].open()
            tg.cancel_scope.cancel()
        assert not factory.pin(27).state


async def test_the_selftest_checks_every_doors_relay(factory: MockFactory, recorder: Recorder) -> None:
    with Panel(CONFIG, pin_factory=factory, post=recorder.post) as panel:
        async with anyio.create_task_group() as tg:
            tg.start_soon(panel.run)
            await anyio.lowlevel.checkpoint()
            results = await run_selftest(panel, tone_seconds=0.0)
            tg.cancel_scope.cancel()
    rows = {r.check: r for r in results}
    assert rows["relay at rest (social)"].passed and rows["relay at rest (garage)"].passed
