"""Edge storms on every input of the real :class:`hw.panel.Panel` over gpiozero's MockFactory: at most one
press per hold-off, a held button rings once, a flapping door contact settles, nothing crashes, and the
relay is released at the end. Holds of minutes are checked on the pure filter with a simulated clock."""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from daemon.config import default_config_text, parse_config
from hw._timing import PressFilter
from hw.events import ButtonPressed, DoorClosed, DoorOpened, ExitRequested, HwEvent, TamperTriggered
from hw.panel import Panel

pytestmark = [pytest.mark.anyio]


class FakeSpeaker:
    async def start(self) -> None:
        pass

    def close(self) -> None:
        pass


async def storm(pin: object, edges: int, rng: random.Random, settle_low: bool) -> float:
    """``edges`` edges with random 0-2 ms gaps (a loop yielding to the event loop now and then)."""
    started = time.monotonic()
    for i in range(edges):
        if i % 2:
            pin.drive_high()  # type: ignore[attr-defined]
        else:
            pin.drive_low()  # type: ignore[attr-defined]
        if i % 20 == 0:
            await anyio.sleep(rng.random() * 0.002)
    if settle_low:
        pin.drive_low()  # type: ignore[attr-defined]
    else:
        pin.drive_high()  # type: ignore[attr-defined]
    return time.monotonic() - started


async def test_edge_storms_on_every_input(tmp_path: Path) -> None:
    config = parse_config(default_config_text())
    config = replace(config, relay=replace(config.relay, pulse_seconds=0.3))
    events: list[HwEvent] = []
    factory = MockFactory()
    rng = random.Random(7)
    try:
        with Panel(config.panel, pin_factory=factory, post=events.append, speaker=FakeSpeaker()) as panel:  # type: ignore[arg-type]
            async with anyio.create_task_group() as tg:
                tg.start_soon(panel.relay.run)
                await anyio.sleep(0.05)
                took = {
                    name: await storm(factory.pin(pin), 4000, rng, settle_low=False)
                    for name, pin in (("doorbell", 17), ("exit", 22), ("door", 23), ("tamper", 24))
                }
                await anyio.sleep(0.5)  # pulses end, contacts settle
                energized_after = panel.relay.energized
                door_open = panel.door.is_open if panel.door else None
                tg.cancel_scope.cancel()
    finally:
        factory.reset()
    presses = [e for e in events if isinstance(e, ButtonPressed)]
    exits = [e for e in events if isinstance(e, ExitRequested)]
    doors = [e for e in events if isinstance(e, DoorOpened | DoorClosed)]
    print(
        f"\nedges: 4 x 4000; storm seconds {took}; presses {len(presses)}, exits {len(exits)}, "
        f"door events {len(doors)}, tamper {sum(isinstance(e, TamperTriggered) for e in events)}"
    )
    assert len(presses) <= math.ceil(took["doorbell"] / 1.0) + 1
    assert len(exits) <= math.ceil(took["exit"] / 0.5) + 1
    times = [p.at for p in presses]
    assert all(b - a >= 1.0 - 1e-3 for a, b in itertools.pairwise(times))
    assert not energized_after and door_open is False
    # Door events alternate: never two "opened" in a row.
    kinds = [type(e) for e in doors]
    assert all(a is not b for a, b in itertools.pairwise(kinds))


async def test_button_held_rings_once_in_real_time() -> None:
    config = parse_config(default_config_text())
    events: list[HwEvent] = []
    factory = MockFactory()
    try:
        with Panel(config.panel, pin_factory=factory, post=events.append, speaker=FakeSpeaker()):  # type: ignore[arg-type]
            pin = factory.pin(17)
            pin.drive_low()
            await anyio.sleep(2.5)  # well past the 1 s hold-off
            pin.drive_high()
            await anyio.sleep(0.1)
    finally:
        factory.reset()
    assert sum(isinstance(e, ButtonPressed) for e in events) == 1


def test_button_held_for_ten_minutes_with_chatter_rings_once() -> None:
    # Time compressed: the pure filter fed a simulated clock. A stuck button whose contact chatters
    # every 30 s for 10 minutes rings once per hold-off at most, and once if it never lets go.
    f = PressFilter(min_press=0.05, holdoff=1.0)
    presses = 0
    due = f.edge(True, 0.0)
    assert due is not None
    presses += f.check(due[0], due[1]) is not None
    for second in range(1, 600):
        if f.check(due[0], float(second)) is not None:
            presses += 1
    assert presses == 1
    # Now with a 1 ms bounce every 30 s: each bounce may ring again once the hold-off is over.
    f = PressFilter(min_press=0.05, holdoff=1.0)
    presses, t = 0, 0.0
    due = f.edge(True, t)
    while t < 600:
        if due is not None and f.check(due[0], max(due[1], t)) is not None:
            presses += 1
            due = None
        t += 30.0
        f.edge(False, t)
        due = f.edge(True, t + 0.001) or due
    assert presses <= 600 / 30 + 1
