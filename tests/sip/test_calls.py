"""Outgoing calls against real far ends: baresip (media, RFC 2833) and sipp (statuses, SIP INFO)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.errors import CallGoneError
from daemon.sip import (
    CallAnswered,
    CallEnded,
    CallRinging,
    DtmfReceived,
    MediaActive,
    PlaybackFinished,
    SipEngine,
)
from tests.sip.audio import tone_sequence
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, Sipp, write_tones_wav

pytestmark = pytest.mark.peers

PROMPT_TONES = [500.0, 1000.0, 1500.0, 700.0]


async def test_baresip_hears_our_wav_and_we_hear_it(tmp_path: Path, bridge: LoopBridge, tone_wav: Path) -> None:
    phone_tone = write_tones_wav(tmp_path / "phone.wav", [(1200, 30.0)])
    with Baresip(tmp_path, audio_source=phone_tone) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=10)
            await log.wait(CallAnswered, call)
            await phone.wait_event("CALL_ESTABLISHED", 5)
            await log.wait(MediaActive, call)
            ours = tmp_path / "heard.wav"
            await engine.record(call, str(ours))
            await engine.play(call, str(tone_wav))
            await log.wait(PlaybackFinished, call, timeout=5)
            await anyio.sleep(0.3)  # jitter buffer drains
            assert (await engine.stop_recording(call)) is True
            await engine.hangup(call)
            ended = await log.wait(CallEnded, call)
            assert ended.by_us
            await phone.wait_event("CALL_CLOSED", 5)
            with pytest.raises(CallGoneError):
                await engine.snapshot(call)
    [received] = phone.received_recordings()
    assert tone_sequence(received, PROMPT_TONES) == PROMPT_TONES
    assert tone_sequence(ours, [*PROMPT_TONES, 1200.0]) == [1200.0]


async def test_dtmf_both_ways_with_baresip(tmp_path: Path, bridge: LoopBridge) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=10)
            await log.wait(MediaActive, call)
            await phone.wait_event("CALL_ESTABLISHED", 5)
            await anyio.sleep(0.2)
            phone.command("sndcode", "7")
            got = await log.wait(DtmfReceived, call)
            assert (got.digit, got.method) == ("7", "rfc2833")
            await engine.send_dtmf(call, "5")
            event = await phone.wait_event("CALL_DTMF_START", 5)
            assert event.get("param") == "5"
            snap = await engine.snapshot(call)
            assert snap.media_active and snap.connect_seconds > 0
            await engine.hangup(call)
            await log.wait(CallEnded, call)


async def test_sip_info_dtmf_from_sipp(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_info_dtmf", digit="9") as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri(), ring_timeout=10)
            got = await log.wait(DtmfReceived, call)
            assert (got.digit, got.method) == ("9", "info")
            await engine.hangup(call)
            await log.wait(CallEnded, call)


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("uas_busy", 486),
        ("uas_decline", 603),
        ("uas_not_found", 404),
        ("uas_unavailable", 480),
    ],
)
async def test_failure_status_reported(tmp_path: Path, bridge: LoopBridge, scenario: str, code: int) -> None:
    with Sipp(tmp_path, scenario) as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri(), ring_timeout=10)
            ringing = await log.wait(CallRinging, call)
            assert ringing.code == 180
            ended = await log.wait(CallEnded, call)
            assert ended.code == code and ended.reason and not ended.by_us


async def test_ring_timeout_cancels(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_never_answer") as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri(), ring_timeout=0.5)
            await log.wait(CallRinging, call)
            ended = await log.wait(CallEnded, call)
            assert ended.code == 408 and "ring timeout" in ended.reason and ended.by_us
        await anyio.sleep(0.3)
    assert "CANCEL" in far.messages()


async def test_hangup_before_answer_sends_cancel(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_never_answer") as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri())
            await log.wait(CallRinging, call)
            await engine.hangup(call)
            ended = await log.wait(CallEnded, call)
            assert ended.by_us
            with pytest.raises(CallGoneError):
                await engine.hangup(call)
    assert "CANCEL" in far.messages()
