"""Floods at the engine's SIP port from another process: INVITE bursts (which aborted the process before
refusals were paced: docs/pjsua2.md, section 5) and a REGISTER storm. The engine answers every one, keeps serving,
and the panel's own call still goes out in the middle of a flood."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.sip import CallEnded, CallRinging, IncomingCall, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Sipp
from tests.support.sip_flood import FloodResult, run_flood

pytestmark = pytest.mark.peers

REFUSED = {"SIP/2.0 603 Decline", "SIP/2.0 486 Busy Here"}  # by us (paced), or by pjsua with every slot taken


def all_refused(result: FloodResult, count: int) -> bool:
    final = result["final"]
    assert isinstance(final, dict)
    return result["unanswered"] == 0 and set(final) <= REFUSED and sum(final.values()) == count


async def test_an_invite_burst_is_refused_at_a_pace_not_fatal(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """300 INVITEs 2 ms apart: refused all at once, 60 of them aborted the process. And the journal gets a
    bounded number of lines about them (it got two per INVITE)."""
    caplog.set_level(logging.INFO)
    config = make_config(inbound_allow=("sip:concierge@127.0.0.1",))
    async with SipEngine(config, bridge) as engine:
        result = await run_flood(engine.sip_port, 300, 2)
        print(f"\nINVITE burst: {result}")
        assert all_refused(result, 300)
        about_the_flood = [
            r for r in caplog.records if r.name.startswith("daemon.sip") and "sip:flood" in r.getMessage()
        ]
        assert 0 < len(about_the_flood) <= 10, len(about_the_flood)
        await engine.ping()
        assert await engine.live_calls() == []
        # still serving: an allowlisted caller is answered
        log = EventLog(engine)
        caller = Sipp(tmp_path, "uac_answered", caller="concierge", hold_ms=200)
        assert await caller.run_uac(engine.sip_port) == 0
        incoming = await log.wait(IncomingCall)
        while not incoming.allowed:  # refusals of the burst still being reported
            incoming = await log.wait(IncomingCall)
        assert engine.fault_counters == (0, 0)


async def test_the_panel_dials_out_in_the_middle_of_a_flood(tmp_path: Path, bridge: LoopBridge) -> None:
    """Every call slot is held by a caller waiting to be refused; our dial refuses one early to get a slot."""
    with Sipp(tmp_path, "uas_busy") as resident:
        async with SipEngine(make_config(), bridge) as engine, anyio.create_task_group() as tg:
            log = EventLog(engine)
            results: list[FloodResult] = []

            async def flood() -> None:
                results.append(await run_flood(engine.sip_port, 1000, 2))

            tg.start_soon(flood)
            await anyio.sleep(0.8)
            handle = await engine.dial(resident.uri("101"), ring_timeout=5)
            ended = await log.wait(CallEnded, handle)
            assert (ended.code, ended.by_us) == (486, False)  # the far end's answer: the INVITE went out
            with anyio.fail_after(30):
                while not results:
                    await anyio.sleep(0.1)
            print(f"\nflood during a dial: {results[0]}")
            assert all_refused(results[0], 1000)
            assert await engine.live_calls() == []


async def test_a_dial_in_a_flood_refuses_a_waiting_caller_after_a_ring_group_was_cancelled(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A parallel group's cancelled legs leave INVITE transactions behind (Completed after the 487, 32 s over
    UDP) though their calls ended. Before: a dial that found every slot taken by waiting callers ended those
    transactions, counted that as a freed slot, tried once more and failed with PJ_ETOOMANY (the first leg of
    a ring group of 8 under figure 7's load). Now it goes on to refuse a waiting caller."""
    caplog.set_level(logging.INFO, logger="daemon.sip")
    with Sipp(tmp_path, "uas_never_answer") as legs, Sipp(tmp_path, "uas_busy") as resident:
        async with SipEngine(make_config(), bridge) as engine, anyio.create_task_group() as tg:
            log = EventLog(engine)
            group = [await engine.dial(legs.uri(f"leg{i}"), ring_timeout=10) for i in range(4)]
            for leg in group:
                await log.wait(CallRinging, leg)
            for leg in group:
                await engine.hangup(leg)
            for leg in group:
                assert (await log.wait(CallEnded, leg)).code == 487  # the CANCEL was answered: the call ended
            results: list[FloodResult] = []

            async def flood() -> None:
                results.append(await run_flood(engine.sip_port, 1000, 2))

            tg.start_soon(flood)
            await anyio.sleep(0.8)
            handle = await engine.dial(resident.uri("101"), ring_timeout=5)
            ended = await log.wait(CallEnded, handle)
            assert (ended.code, ended.by_us) == (486, False)  # the INVITE went out
            with anyio.fail_after(30):
                while not results:
                    await anyio.sleep(0.1)
            assert all_refused(results[0], 1000)
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused one early to dial sip:101@" in m for m in messages), "every slot was not taken: no test"
    assert not any("slot freed" in m for m in messages)  # ending a lingering transaction freed no slot


async def test_a_register_storm_is_ignored_while_a_caller_is_served(tmp_path: Path, bridge: LoopBridge) -> None:
    """The panel is a user agent, not a registrar: 2,000 REGISTERs 1 ms apart get no 2xx (pjsua answers
    none: no state is kept for them), and an allowlisted caller placing a call in the middle is answered."""
    config = make_config(inbound_allow=("sip:concierge@127.0.0.1",))
    async with SipEngine(config, bridge) as engine, anyio.create_task_group() as tg:
        log = EventLog(engine)
        results: list[FloodResult] = []

        async def storm() -> None:
            results.append(await run_flood(engine.sip_port, 2000, 1, "REGISTER"))

        tg.start_soon(storm)
        await anyio.sleep(0.5)
        caller = Sipp(tmp_path, "uac_answered", caller="concierge", hold_ms=200)
        assert await caller.run_uac(engine.sip_port) == 0
        incoming = await log.wait(IncomingCall)
        assert incoming.allowed
        with anyio.fail_after(30):
            while not results:
                await anyio.sleep(0.1)
        print(f"\nREGISTER storm: {results[0]}")
        final = results[0]["final"]
        assert isinstance(final, dict) and not any(status.startswith("SIP/2.0 2") for status in final)
        await engine.ping()
        assert await engine.live_calls() == [] and engine.fault_counters == (0, 0)
