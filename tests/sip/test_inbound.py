"""Calls into the panel: allowlisted callers answered, everyone else refused, hostile INVITEs survived."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.bridge import LoopBridge
from daemon.sip import CallAnswered, CallEnded, IncomingCall, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Sipp

pytestmark = pytest.mark.peers


async def test_allowed_caller_is_answered(tmp_path: Path, bridge: LoopBridge) -> None:
    config = make_config(inbound_allow=("sip:concierge@127.0.0.1",), inbound_sources=("127.0.0.0/8",))
    async with SipEngine(config, bridge) as engine:
        log = EventLog(engine)
        caller = Sipp(tmp_path, "uac_answered", caller="concierge", hold_ms=300)
        assert await caller.run_uac(engine.sip_port) == 0
        incoming = await log.wait(IncomingCall)
        assert incoming.allowed and "concierge" in incoming.remote_uri
        await log.wait(CallAnswered, incoming.handle)
        ended = await log.wait(CallEnded, incoming.handle)
        assert not ended.by_us


async def test_allowed_caller_from_outside_inbound_sources_is_refused(tmp_path: Path, bridge: LoopBridge) -> None:
    """The From says concierge, but the INVITE did not come from where the concierge calls from."""
    config = make_config(inbound_allow=("sip:concierge@127.0.0.1",), inbound_sources=("10.0.0.0/8",))
    async with SipEngine(config, bridge) as engine:
        log = EventLog(engine)
        caller = Sipp(tmp_path, "uac_expect_refusal", status=603, caller="concierge")
        assert await caller.run_uac(engine.sip_port) == 0
        incoming = await log.wait(IncomingCall)
        assert not incoming.allowed and "concierge" in incoming.remote_uri
        ended = await log.wait(CallEnded, incoming.handle)
        assert (ended.code, ended.by_us) == (603, True)
        assert not log.of(CallAnswered)


@pytest.mark.parametrize("refuse_status", [603, 486])
async def test_other_callers_are_refused(tmp_path: Path, bridge: LoopBridge, refuse_status: int) -> None:
    config = make_config(inbound_allow=("sip:concierge@127.0.0.1",), inbound_refuse_status=refuse_status)
    async with SipEngine(config, bridge) as engine:
        log = EventLog(engine)
        caller = Sipp(tmp_path, "uac_expect_refusal", status=refuse_status, caller="stranger")
        assert await caller.run_uac(engine.sip_port) == 0  # sipp saw exactly that status
        incoming = await log.wait(IncomingCall)
        assert not incoming.allowed
        ended = await log.wait(CallEnded, incoming.handle)
        assert (ended.code, ended.by_us) == (refuse_status, True)
        assert not log.of(CallAnswered)


async def test_nothing_answered_by_default(tmp_path: Path, bridge: LoopBridge) -> None:
    async with SipEngine(make_config(), bridge) as engine:
        caller = Sipp(tmp_path, "uac_expect_refusal", status=603, caller="concierge")
        assert await caller.run_uac(engine.sip_port) == 0


async def test_invites_without_sdp_are_refused_without_crashing(tmp_path: Path, bridge: LoopBridge) -> None:
    async with SipEngine(make_config(), bridge) as engine:
        log = EventLog(engine)
        caller = Sipp(tmp_path, "uac_no_sdp_expect_refusal", status=603, caller="attacker")
        assert await caller.run_uac(engine.sip_port, calls=10) == 0
        await engine.ping()  # the owner thread is alive and serving
        for _ in range(10):
            await log.wait(CallEnded)
        assert engine.fault_counters == (0, 0)
