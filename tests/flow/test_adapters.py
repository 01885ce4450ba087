"""The door port over a real Relay on mock pins: it says opened only when the relay energized."""

from __future__ import annotations

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from daemon.flow.ports import DoorResult
from daemon.visit_adapters import open_relay
from hw.relay import Relay
from hw.settings import RelayConfig

pytestmark = pytest.mark.anyio


async def test_the_door_port_reports_the_relay_truthfully() -> None:
    factory = MockFactory()
    relay = Relay(RelayConfig(pin=27, pulse_seconds=0.2), pin_factory=factory)
    try:
        # No run() task: hw refuses to energize (nothing would end the pulse) -> a relay fault, not "open".
        fault = open_relay(relay)
        assert not fault.opened and fault.reason.startswith("relay fault:")
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            await anyio.wait_all_tasks_blocked()
            assert open_relay(relay) == DoorResult(True) and relay.energized
            relay.block(60)  # what a tamper does: released now, refused from now on
            assert open_relay(relay).reason == "relay blocked by tamper" and not relay.energized
            tg.cancel_scope.cancel()
        assert factory.pin(27).state == 0  # released when run() ended
    finally:
        relay.close()
        factory.reset()
