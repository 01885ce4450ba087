"""The router's keypad: keys from hw into the pure typing machine, then a visit, a spoken 'not found', or a PIN
refused, with fakes for every port (the real stack: tests/scenario/test_keypad.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import anyio
import anyio.lowlevel
import pytest

from daemon.config import KeypadSettings
from daemon.errors import AudioError
from daemon.flow.keypad import Tone
from daemon.flow.vocabulary import Outcome, Prompt
from daemon.sip.types import CallHandle, IncomingCall
from hw.events import KeyPressed, KeyStuck
from tests.flow.test_router import CONFIG, Harness

pytestmark = pytest.mark.anyio

KEYPAD = KeypadSettings(rows=(12, 16, 20, 21), columns=(13, 19, 26))
NUMBERED = replace(
    CONFIG, keypad=KEYPAD, apartments=(replace(CONFIG.apartments[0], number="101"), *CONFIG.apartments[1:])
)


class Tones:
    def __init__(self) -> None:
        self.played: list[Tone] = []

    async def play_tone(self, tone: Tone) -> AudioError | None:
        self.played.append(tone)
        return None


async def running(h: Harness) -> None:
    """Until the router's task group is up (the prompts and tones outside a visit run there)."""
    with anyio.fail_after(5):
        while h.router._tg is None:
            await anyio.lowlevel.checkpoint()


def typed(h: Harness, keys: str) -> None:
    for key in keys:
        h.router.hw_event(KeyPressed(key, time.monotonic()))


async def test_a_number_and_the_call_key_start_the_visit_as_a_press_would() -> None:
    h = Harness(NUMBERED)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        await running(h)
        typed(h, "101#")
        await h.next_visit()
        tg.cancel_scope.cancel()
    (request,) = h.started
    assert (request.apartment.name, request.button) == ("A", "keypad")
    assert ("KEYPAD_CALL", "started") in h.rec.events


async def test_an_unknown_number_is_spoken_and_never_quoted() -> None:
    h = Harness(NUMBERED)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        await running(h)
        typed(h, "909#")
        with anyio.fail_after(5):
            await h.speaker.started.wait()
        tg.cancel_scope.cancel()
    assert h.speaker.played == [Prompt.APARTMENT_NOT_FOUND] and not h.started
    assert h.rec.names() == ["NUMBER_NOT_FOUND"] and "909" not in str(h.rec.events)


async def test_every_key_clicks_and_a_pin_without_pins_configured_is_refused_unread() -> None:
    h = Harness(NUMBERED)
    tones = Tones()
    h.router.reconfigure(NUMBERED, replace(h.ports, tones=tones))
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        await running(h)
        for key in "#4821#":
            typed(h, key)
            with anyio.fail_after(5):
                while len(tones.played) < 1 or h.router._tone_pending:
                    await anyio.lowlevel.checkpoint()
        await h.rec.until("PIN_REFUSED")
        h.router.hw_event(KeyStuck("5", time.monotonic()))
        tg.cancel_scope.cancel()
    assert tones.played[:5] == [Tone.CLICK] * 5 and tones.played[-1] is Tone.ERROR
    assert ("PIN_REFUSED", "no access PINs on this panel") in h.rec.events
    assert "KEYSTUCK" in h.rec.names() and "4821" not in str(h.rec.events)


async def test_the_inbound_concierges_code_for_another_door_opens_that_door() -> None:
    config = replace(CONFIG, inbound_codes=("9",), inbound_door_codes={"garage": ("7391",)})
    h = Harness(config)
    concierge = CallHandle(50, 0, "incoming", "sip:c@h")
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        h.router.sip_event(IncomingCall(concierge, "sip:c@h", allowed=True))
        await h.next_visit()
        h.digits(concierge, "7391")
        with anyio.fail_after(5):
            await h.router.wait_completed(1)
        tg.cancel_scope.cancel()
    ((result, _),) = h.done
    assert result.outcome is Outcome.DOOR_OPENED and h.door.doors == ["garage"]
