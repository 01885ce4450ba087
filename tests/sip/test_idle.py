"""An idle engine costs (almost) nothing: its owner thread is not polled 50 times a second, pjmedia runs no
conference clock and no media thread, yet a command is served at once and every call gets its clock back
(docs/pjsua2.md, "The owner's wait" and "The conference clock runs only with a call")."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.sip import CallEnded, DtmfReceived, MediaActive, SipEngine
from daemon.sip._pj_owner import IDLE_WAIT_MS
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip

pytestmark = pytest.mark.peers

WINDOW_S = 1.5  # the measured window (a rate needs one): 75 turns at the old 20 ms poll, ~2 at a 1 s wait


def pjmedia_threads() -> list[str]:
    """This process's threads that pjmedia names: ``clock`` (the conference clock of the null device) and
    ``media`` (pjmedia's own ioqueue worker, 100 wake-ups a second)."""
    names = [p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")]
    return sorted(n for n in names if n in ("clock", "media"))


async def settle_idle(engine: SipEngine) -> None:
    """Wait (bounded) until the clock of a call that ended has stopped."""
    with anyio.fail_after(3):
        while engine.media_clock_running:
            await engine.ping()  # a turn of the owner, which stops the clock once its grace is over
            await anyio.sleep(0.05)


async def test_idle_owner_is_not_polled_and_still_answers_at_once(
    bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.sip")  # pjsip at its most verbose level we ever ask for
    async with SipEngine(make_config(), bridge) as engine:
        await engine.ping()
        turns = engine.owner_turns
        await anyio.sleep(WINDOW_S)  # the window the idle wake-ups are counted in
        idle_turns = engine.owner_turns - turns
        assert idle_turns <= 2 * WINDOW_S * 1000 / IDLE_WAIT_MS + 3, f"{idle_turns} turns in {WINDOW_S} s idle"
        # Each command wakes the owner out of its long wait: no command waits for the wait to end.
        slowest = 0.0
        for _ in range(5):
            started = time.monotonic()
            await engine.ping()
            slowest = max(slowest, time.monotonic() - started)
            await anyio.sleep(0.05)  # the owner goes back to its long wait
        assert slowest < 0.1, f"a command waited {slowest * 1000:.0f} ms for an idle owner"
        assert engine.wake_failures == 0
    # pjsip takes a wake datagram (CRLF only) for a keep-alive: it drops it without a word.
    assert not [r.getMessage() for r in caplog.records if "Dropping" in r.getMessage()]


async def test_no_clock_while_idle_and_one_for_each_call(tmp_path: Path, bridge: LoopBridge) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            await engine.ping()
            assert not engine.media_clock_running
            assert pjmedia_threads() == []
            log = EventLog(engine)
            for _ in range(2):  # the second call restarts the clock the first one's end stopped
                call = await engine.dial(phone.uri, ring_timeout=10)
                await log.wait(MediaActive, call)
                assert engine.media_clock_running
                if not engine.has_sound_device:
                    assert pjmedia_threads() == ["clock"]
                await phone.wait_event("CALL_ESTABLISHED", 5)
                await anyio.sleep(0.2)
                # RTP flows both ways on the restarted clock: a digit each way (no clock, no RTP, no digit).
                phone.command("sndcode", "7")
                got = await log.wait(DtmfReceived, call)
                assert got.digit == "7"
                await engine.send_dtmf(call, "5")
                event = await phone.wait_event("CALL_DTMF_START", 5)
                assert event.get("param") == "5"
                await engine.hangup(call)
                await log.wait(CallEnded, call)
                await phone.wait_event("CALL_CLOSED", 5)
                await settle_idle(engine)
                assert pjmedia_threads() == []


async def test_a_card_that_will_not_open_still_gets_the_call_a_clock(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A sound card gone missing (unplugged USB) must not silence the call: without a clock no RTP and no DTMF
    leave, and the door code is DTMF. The owner falls back to the null device for that call."""
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            assert engine._owner is not None
            engine._owner.media.sound_device_index = 99  # no such device: opening it fails at the call
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=10)
            await log.wait(MediaActive, call)
            assert engine.media_clock_running
            await phone.wait_event("CALL_ESTABLISHED", 5)
            await anyio.sleep(0.2)
            phone.command("sndcode", "7")
            got = await log.wait(DtmfReceived, call)
            assert got.digit == "7"
            await engine.hangup(call)
            await log.wait(CallEnded, call)
    assert any("cannot open the sound card" in r.getMessage() for r in caplog.records)
