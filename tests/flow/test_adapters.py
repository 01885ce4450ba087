"""The door port over a real Relay on mock pins: it says opened only when the relay energized."""

from __future__ import annotations

import time

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from daemon.config import Apartment, TimingConfig
from daemon.flow.machine import new_visit
from daemon.flow.ports import DoorResult
from daemon.flow.router import VisitRequest
from daemon.flow.runner import VisitResult
from daemon.flow.vocabulary import Outcome
from daemon.visit_adapters import IN_PROGRESS, open_relay, visit_record, visit_started_record
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


def test_history_rows_at_the_start_and_at_the_end_of_a_visit() -> None:
    apt = Apartment(name="101", buttons=("101",), residents=("sip:a@h",))
    request = VisitRequest(apt, "101", pressed_at=time.monotonic() - 5, visit="v1")
    begun = visit_started_record(request)
    assert (begun.visit, begun.apartment, begun.outcome, begun.door_opened) == ("v1", "101", IN_PROGRESS, False)
    state = new_visit(apt, TimingConfig())
    now = time.monotonic()
    refused = VisitResult("v1", state, Outcome.DOOR_REFUSED, "relay blocked by tamper", now - 2, "sip:a@h", None, now)
    row = visit_record(refused, request)
    assert (row.outcome, row.door_opened, row.opened_by, row.failure) == (
        "door_refused",
        False,
        "",
        "relay blocked by tamper",
    )
    assert abs((row.started_at - begun.started_at).total_seconds()) < 0.01  # one visit, one start time
    assert row.ring_seconds is not None and 2.9 < row.ring_seconds < 3.1
