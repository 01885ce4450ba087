"""Engine life cycle: shutdown with calls up, a raising callback, and the deadlocks of docs/pjsua2.md.

Each deadlock test reproduces a "callback -> loop -> pjsua2 call" pattern that deadlocked (or stalled
~2.1 s to PJ_ETIMEDOUT) in the naive design, under a watchdog much shorter than 2 s.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.errors import SipError
from daemon.sip import (
    CallAnswered,
    CallEnded,
    CallRinging,
    DtmfReceived,
    IncomingCall,
    MediaActive,
    SipEngine,
)
from daemon.sip._pj_media import MediaCommands
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, Sipp

pytestmark = pytest.mark.peers

WATCHDOG = 1.0  # far below the 2.1 s PJ_ETIMEDOUT stall and the infinite deadlock


async def test_shutdown_with_calls_up(tmp_path: Path, bridge: LoopBridge, tone_wav: Path) -> None:
    with Baresip(tmp_path) as phone, Sipp(tmp_path, "uas_never_answer") as ringing_far_end:
        engine = SipEngine(make_config(), bridge)
        async with engine:
            log = EventLog(engine)
            answered = await engine.dial(phone.uri)
            ringing = await engine.dial(ringing_far_end.uri())
            await log.wait(MediaActive, answered)
            await log.wait(CallRinging, ringing)
            await engine.play(answered, str(tone_wav), loop=True)
            await engine.record(answered, str(tmp_path / "rec.wav"))
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        assert engine.destroy_seconds < 2.0
        assert not any(t.name == "sip-owner" for t in threading.enumerate())
        await phone.wait_event("CALL_CLOSED", 5)  # the phone got its BYE


async def test_engine_restarts_in_one_process(bridge: LoopBridge) -> None:
    for _ in range(3):
        async with SipEngine(make_config(), bridge) as engine:
            await engine.ping()
        assert engine.destroy_seconds < 2.0


async def test_a_second_engine_in_the_process_is_refused_not_aborted(bridge: LoopBridge) -> None:
    """pjsua2 allows one Endpoint per process and a second one aborted it (pj_thread_this assertion): an
    engine that has not stopped (e.g. its stop timed out) must make the next start fail, not crash."""
    async with SipEngine(make_config(), bridge) as first:
        with pytest.raises(SipError, match="another SIP engine in this process has not stopped"):
            async with SipEngine(make_config(), bridge):
                pass
        await first.ping()  # the first goes on serving
    async with SipEngine(make_config(), bridge) as after:  # and once it is gone, a new one starts
        await after.ping()


async def test_sip_port_taken_is_a_clean_start_error(bridge: LoopBridge) -> None:
    """Another program holds the SIP port: start-up fails with the reason, as often as it is tried, and
    leaves nothing behind (the half-made Endpoint is destroyed, so a later start works)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = make_config(port=squatter.getsockname()[1])
        for _ in range(2):
            with pytest.raises(SipError, match="Address already in use"):
                async with SipEngine(taken, bridge):
                    pass
    async with SipEngine(make_config(), bridge) as engine:
        await engine.ping()
    assert not any(t.name == "sip-owner" for t in threading.enumerate())


async def test_raising_callback_is_contained(tmp_path: Path, bridge: LoopBridge) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            engine._set_fault_once()
            call = await engine.dial(phone.uri)
            await log.wait(CallAnswered, call)
            assert engine.fault_counters == (0, 1)
            # calls up + a callback that raised: exit must still be clean


async def test_deadlock_incoming_call_then_loop_reads_call(tmp_path: Path, bridge: LoopBridge) -> None:
    """onIncomingCall -> loop getInfo() deadlocked with the PJSUA lock held."""
    async with SipEngine(make_config(inbound_allow=("sip:concierge@127.0.0.1",)), bridge) as engine:
        caller = Sipp(tmp_path, "uac_answered", caller="concierge", hold_ms=500)
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller.run_uac, engine.sip_port)
            incoming = await EventLog(engine).wait(IncomingCall)
            with anyio.fail_after(WATCHDOG):
                snap = await engine.snapshot(incoming.handle)
            assert snap.handle == incoming.handle


async def test_deadlock_loop_polls_while_calls_change(tmp_path: Path, bridge: LoopBridge) -> None:
    """A loop task polling Account.getInfo() while callbacks ran deadlocked; here snapshots are cheap.

    Four tasks issue commands back to back. The owner once drained its queue to empty before polling
    again, and they refilled it as fast: no SIP was read, one wake datagram per command filled the
    socket's buffer, the kernel dropped the far end's 486 and the dial retransmitted for 32 s. Every
    call must end with the far end's answer."""
    with Sipp(tmp_path, "uas_busy") as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            polls = 0
            async with anyio.create_task_group() as tg:

                async def poll() -> None:
                    nonlocal polls
                    while True:
                        with anyio.fail_after(WATCHDOG):
                            await engine.live_calls()
                        _ = engine.registration
                        polls += 1

                for _ in range(4):
                    tg.start_soon(poll)
                for _ in range(10):
                    call = await engine.dial(far.uri())
                    ended = await log.wait(CallEnded, call, timeout=5)
                    assert ended.code == 486, ended
                tg.cancel_scope.cancel()
            assert polls > 40


async def test_deadlock_dtmf_then_loop_hangs_up(tmp_path: Path, bridge: LoopBridge) -> None:
    """onDtmfDigit -> loop hangup() deadlocked."""
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri)
            await log.wait(MediaActive, call)
            await phone.wait_event("CALL_ESTABLISHED", 5)
            await anyio.sleep(0.2)
            phone.command("sndcode", "3")
            await log.wait(DtmfReceived, call)
            with anyio.fail_after(WATCHDOG):
                await engine.hangup(call)
                await log.wait(CallEnded, call)


@pytest.mark.parametrize("trigger", [CallAnswered, MediaActive])
async def test_deadlock_state_callback_then_loop_hangs_up(tmp_path: Path, bridge: LoopBridge, trigger: type) -> None:
    """onCallState/onCallMediaState -> loop hangup() stalled ~2.1 s into PJ_ETIMEDOUT."""
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri)
            await log.wait(trigger, call)
            with anyio.fail_after(WATCHDOG):
                await engine.hangup(call)
                ended = await log.wait(CallEnded, call)
            assert ended.by_us


class _ClockOrder:
    """A stand-in Endpoint and players that record, in order, when the device closes and players die."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def audDevManager(self) -> _ClockOrder:
        return self

    def setNoDev(self) -> None:
        self.events.append("clock stopped")

    def player(self) -> object:
        player = type("Player", (), {})()
        weakref.finalize(player, self.events.append, "player destroyed")
        return player


def test_shutdown_stops_the_conference_clock_before_players_die() -> None:
    """A player's onEof2 runs on pjmedia's clock thread, and destroying Python-backed ports while the clock ran
    segfaulted here before: shutdown closes the device, and so the clock thread, first."""
    ep = _ClockOrder()
    no_calls = SimpleNamespace(records={})
    media = MediaCommands(no_calls, hooks=None)  # type: ignore[arg-type]
    media.clock_running = True
    media._ended_players.append((1, ep.player()))  # type: ignore[arg-type]
    media.release_all(ep)
    gc.collect()
    assert ep.events == ["clock stopped", "player destroyed"]
    assert not media.clock_running


async def test_shutdown_with_a_prompt_playing_again_and_again(
    tmp_path: Path, bridge: LoopBridge, tone_wav: Path
) -> None:
    """The engine stops while a prompt plays into an answered call, eight times in one process: the clock stops
    before its ports go, and nothing crashes or hangs."""
    with Baresip(tmp_path) as phone:
        for _ in range(8):
            engine = SipEngine(make_config(), bridge)
            async with engine:
                log = EventLog(engine)
                call = await engine.dial(phone.uri)
                await log.wait(MediaActive, call)
                await engine.play(call, str(tone_wav), loop=True)
                await anyio.sleep(0.1)  # a few clock ticks with the player connected
            assert engine.destroy_seconds < 2.0
            assert not any(t.name == "sip-owner" for t in threading.enumerate())
            await phone.wait_event("CALL_CLOSED", 5)
