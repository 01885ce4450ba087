"""A dial that fails in pjsua is a local DialError, never a SIP status; and call slots are not held for
32 s by INVITEs the far end never answered (or whose CANCEL it ignored) after their ring timeout."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.errors import DialError
from daemon.sip import CallEnded, CallRinging, SipEngine
from daemon.sip._pj_call_commands import CANCEL_GRACE_S
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Sipp, free_port

pytestmark = pytest.mark.peers


@pytest.mark.parametrize(
    ("uri", "pj_status"),
    [
        ("sip:101@127.0.0.1:99999", 171042),  # PJSIP_EINVALIDREQURI
        ("sip:::::", 171042),
        ("sip:101@127.0.0.1;transport=tcp", 171064),  # PJSIP_ETPNOTSUITABLE on a UDP panel
    ],
)
async def test_an_undialable_uri_is_a_local_dial_error(bridge: LoopBridge, uri: str, pj_status: int) -> None:
    async with SipEngine(make_config(), bridge) as engine:
        log = EventLog(engine)
        with pytest.raises(DialError) as caught:
            await engine.dial(uri, ring_timeout=5)
        err = caught.value
        assert err.local and err.status == 0 and err.pj_status == pj_status
        assert "nothing was sent" in str(err)
        await engine.ping()
        log.drain()
        # pjsua reported DISCONNECTED inside makeCall for some of these: no CallEnded for a handle never given
        assert log.of(CallEnded) == [] and await engine.live_calls() == []


async def test_full_call_slots_are_a_dial_error_not_a_status(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_never_answer") as far:
        async with SipEngine(make_config(max_calls=2), bridge) as engine:
            log = EventLog(engine)
            ringing = [await engine.dial(far.uri(), ring_timeout=10) for _ in range(2)]
            for call in ringing:
                await log.wait(CallRinging, call)
            with pytest.raises(DialError, match="no room for another call") as caught:
                await engine.dial(far.uri(), ring_timeout=10)
            assert caught.value.pj_status == 70010 and caught.value.status == 0
            for call in ringing:
                await engine.hangup(call)
                await log.wait(CallEnded, call)


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, count: int, within: float) -> None:
    with anyio.fail_after(within):
        while sum(text in r.getMessage() for r in caplog.records) < count:
            await anyio.sleep(0.05)


@pytest.mark.parametrize("scenario", ["uas_ignore_invite", "uas_ring_ignore_cancel"])
async def test_slots_of_cancelled_calls_are_freed_when_the_far_end_ignores_us(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture, scenario: str
) -> None:
    """Before: pjsua held each slot until pjsip's 32 s transaction timeout, and every dial failed
    meanwhile (PJ_ETOOMANY). Now a slot comes back CANCEL_GRACE_S after the hang-up, or at once when a
    dial needs it."""
    caplog.set_level(logging.INFO, logger="daemon.sip")
    with Sipp(tmp_path, scenario) as far:
        async with SipEngine(make_config(max_calls=2), bridge) as engine:
            log = EventLog(engine)
            first = [await engine.dial(far.uri(), ring_timeout=0.3) for _ in range(2)]
            for call in first:
                assert (await log.wait(CallEnded, call)).code == 408
            # every slot held by an unanswered INVITE: the next dial frees one at once
            again = await engine.dial(far.uri(), ring_timeout=0.3)
            await log.wait(CallEnded, again)
            # and without a dial asking, each comes back after the grace period
            await wait_for_log(caplog, "slot freed", 3, within=CANCEL_GRACE_S + 3)
            calls = [await engine.dial(far.uri(), ring_timeout=5) for _ in range(2)]
            for call in calls:
                await engine.hangup(call)
                await log.wait(CallEnded, call)


async def test_a_call_no_far_end_ever_answered_ends_local_not_with_its_status(
    tmp_path: Path, bridge: LoopBridge
) -> None:
    """TCP to a port nobody listens on: pjsip makes up "503" itself. That is a local failure (nobody was
    reached), told apart from a far end's own 503/486 by ``CallEnded.local``."""
    async with SipEngine(make_config(transport="tcp"), bridge) as engine:
        log = EventLog(engine)
        call = await engine.dial(f"sip:resident@127.0.0.1:{free_port()}", ring_timeout=5)
        ended = await log.wait(CallEnded, call)
        assert ended.local and not ended.by_us
    with Sipp(tmp_path, "uas_busy") as busy, Sipp(tmp_path, "uas_never_answer") as silent:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(busy.uri(), ring_timeout=5)
            ended = await log.wait(CallEnded, call)
            assert ended.code == 486 and not ended.local
            ringing = await engine.dial(silent.uri(), ring_timeout=0.2)
            ended = await log.wait(CallEnded, ringing)  # our ring timeout: by us, not local
            assert ended.by_us and not ended.local
