"""``SipEngine.stream_stats``: pjsua2's counters of a call's audio stream, read on the owner thread."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.errors import CallGoneError
from daemon.sip import CallEnded, MediaActive, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip


@pytest.mark.peers
async def test_a_calls_stream_counts_the_phones_packets_and_is_gone_with_the_call(
    tmp_path: Path, bridge: LoopBridge
) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=5)
            await log.wait(MediaActive, call)
            with anyio.fail_after(5):  # baresip sends 50 packets a second from its aufile source
                while (stats := await engine.stream_stats(call)) is None or stats.rx_packets < 25:
                    await anyio.sleep(0.1)
            assert stats.rx_lost == 0 and stats.rx_discarded == 0, stats  # loopback loses nothing
            assert stats.jbuf_frame_bytes > 0 and stats.jbuf_avg_delay_ms >= 0, stats
            await engine.hangup(call)
            await log.wait(CallEnded, call)
            with pytest.raises(CallGoneError):
                await engine.stream_stats(call)
