"""RTP inactivity timeout: a call that receives no RTP for ``media_timeout_seconds`` is hung up.

The rules (grace from activation, restart on renegotiation, hold) are unit-tested on the pure
:class:`MediaWatch`; the peer tests check the owner's pjsua2 counter reads against real far ends: sipp
answers and never sends RTP, baresip sends RTP from its aufile source (and stops when SIGSTOPped).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.config import SipConfig
from daemon.sip import CallAnswered, CallEnded, MediaActive, SipEngine
from daemon.sip._media_watch import MediaWatch
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, Sipp

# -- MediaWatch, no pjsua2 ------------------------------------------------------------------------------


def test_silence_from_activation_times_out_once() -> None:
    w = MediaWatch(2.0)
    assert w.interval == 0.5  # a quarter of a short timeout
    w.start(1, now=10.0)
    assert w.due(10.2) == [] and w.due(10.5) == [1]
    assert w.feed(1, 0, 10.5) is None  # baseline only: the clock runs from activation
    assert w.feed(1, 0, 11.5) is None
    assert w.feed(1, 0, 12.0) == pytest.approx(2.0)
    assert 1 not in w and w.due(20.0) == []  # reported once, then no longer watched
    assert w.feed(1, 0, 21.0) is None


def test_packets_keep_the_call_and_silence_after_them_counts_from_the_last() -> None:
    w = MediaWatch(2.0)
    w.start(1, now=0.0)
    for t, count in [(0.5, 10), (1.0, 35), (1.5, 60), (2.0, 60), (3.0, 60)]:
        assert w.feed(1, count, t) is None
    assert w.feed(1, 60, 3.5) == pytest.approx(2.0)  # last growth seen at 1.5


def test_first_positive_sample_counts_as_traffic_and_a_reset_counter_too() -> None:
    w = MediaWatch(2.0)
    w.start(1, now=0.0)
    assert w.feed(1, 40, 1.9) is None  # never early: packets came at some point before this sample
    assert w.feed(1, 40, 3.8) is None
    assert w.feed(1, 3, 3.9) is None  # a recreated stream restarts from zero: traffic, not silence
    assert w.feed(1, 3, 5.9) == pytest.approx(2.0)


def test_hold_stops_watching_and_renegotiation_restarts_the_clock() -> None:
    w = MediaWatch(2.0)
    w.start(1, now=0.0)
    w.stop(1)  # on hold: no RTP by design
    assert w.due(100.0) == [] and w.feed(1, 0, 100.0) is None
    w.start(1, now=100.0)  # active again: a full timeout of grace
    assert w.feed(1, 0, 101.9) is None
    assert w.feed(1, 0, 102.0) is not None


def test_calls_are_independent() -> None:
    w = MediaWatch(1.0, sample_interval=1.0)
    assert w.interval == 0.25
    w.start(1, now=0.0)
    w.start(2, now=0.5)
    assert w.due(0.6) == [1]  # each call on its own sampling schedule
    assert w.feed(1, 0, 1.0) is not None
    assert w.feed(2, 0, 1.0) is None and 2 in w


def test_zero_disables() -> None:
    w = MediaWatch(0.0)
    w.start(1, now=0.0)
    assert not w.enabled and 1 not in w and w.due(1e6) == []
    assert MediaWatch(20.0).interval == 1.0


def test_config_validates_media_timeout() -> None:
    assert SipConfig().media_timeout_seconds == 20.0
    assert not [p for p in SipConfig(media_timeout_seconds=0).problems() if "media_timeout" in p]
    assert [p for p in SipConfig(media_timeout_seconds=-1).problems() if "media_timeout_seconds" in p]


# -- the engine against real far ends -----------------------------------------------------------------


@pytest.mark.peers
async def test_no_rtp_ends_the_call(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_answer_silent") as far:
        async with SipEngine(make_config(media_timeout_seconds=2), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri(), ring_timeout=5)
            await log.wait(MediaActive, call)
            active_at = time.monotonic()
            ended = await log.wait(CallEnded, call, timeout=6)
            seconds = time.monotonic() - active_at
            assert await engine.live_calls() == []
        await anyio.sleep(0.2)
    assert ended.by_us and ended.code == 408 and ended.reason == "media timeout (no RTP for 2 s)", ended
    assert 1.9 < seconds < 3.0, seconds  # the timeout, plus at most one sample interval (0.5 s)
    assert "BYE" in far.messages()


@pytest.mark.peers
async def test_rtp_keeps_the_call_up_and_a_stopped_far_end_is_hung_up(tmp_path: Path, bridge: LoopBridge) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(media_timeout_seconds=2), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=5)
            await log.wait(CallAnswered, call)
            await log.wait(MediaActive, call)
            await anyio.sleep(4.5)  # over twice the timeout, with RTP flowing
            log.drain()
            assert not log.of(CallEnded)
            assert (await engine.snapshot(call)).media_active
            # The far end freezes mid-call (as if its network died): its RTP stops.
            assert phone.proc is not None
            phone.proc.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                ended = await log.wait(CallEnded, call, timeout=6)
                seconds = time.monotonic() - stopped_at
            finally:
                phone.proc.send_signal(signal.SIGCONT)
    assert ended.by_us and ended.code == 408 and "media timeout" in ended.reason, ended
    assert 1.9 < seconds < 3.0, seconds


@pytest.mark.peers
async def test_zero_disables_the_timeout(tmp_path: Path, bridge: LoopBridge) -> None:
    with Sipp(tmp_path, "uas_answer_silent") as far:
        async with SipEngine(make_config(media_timeout_seconds=0), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(far.uri(), ring_timeout=5)
            await log.wait(MediaActive, call)
            await anyio.sleep(3)
            log.drain()
            assert not log.of(CallEnded)
            assert await engine.live_calls() == [call]
            await engine.hangup(call)
            ended = await log.wait(CallEnded, call)
    assert "media timeout" not in ended.reason
