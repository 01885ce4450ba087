"""``[audio] jitter_discard`` and ``silence_suppression`` reach the running call's stream, read back from pjmedia
(``Call.getStreamInfo`` through :meth:`SipEngine.stream_stats`), and the VAD's effect is seen on the wire: with it
off the panel keeps sending while its microphone is quiet (the call-start gap of docs/audio.md).

Needs our pjsua2 build: the discard algorithm is an opaque pointer in a binding without
packaging/pjsua2/swig-jb-discard-algo.patch. Skipped without PulseAudio or baresip, or on a pjsua2 without a sound
device.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from daemon.bridge import LoopBridge
from daemon.simulation.paced_card import paced_card_as_default
from daemon.sip import CallEnded, SipEngine, StreamStats
from daemon.sip._talk_audio import PJMEDIA_JB_DISCARD_PROGRESSIVE, PJMEDIA_JB_DISCARD_STATIC
from hw.settings import AudioConfig
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import NEEDS_PULSE_AND_BARESIP, RESIDENT_HZ, dial_onto_the_card

pytestmark = NEEDS_PULSE_AND_BARESIP

VAD_SUSPEND_S = (
    0.6  # pjmedia sends every frame for 0.6 s of audio after a stream starts (PJMEDIA_STREAM_VAD_SUSPEND_MSEC)
)
WINDOW_S = 1.0  # then packets are counted over this long, the card's microphone silent (no visitor, no echo path)
# 40 % of a 20 ms stream's packets in WINDOW_S: loose for the card's clock on a loaded machine; the VAD sends none
SOME_PACKETS = 0.4 * WINDOW_S / 0.02


async def test_the_defaults_reach_the_stream_and_a_quiet_microphone_is_still_sent(
    tmp_path: Path, bridge: LoopBridge
) -> None:
    stats, sent = await _silent_call(tmp_path, "a", bridge, AudioConfig())
    assert stats.jbuf_discard_algo == PJMEDIA_JB_DISCARD_STATIC
    assert stats.vad is False, stats
    # 20 ms packets: 50 a second (a loose bound: the card's clock on a loaded machine); the VAD would send none
    assert sent >= SOME_PACKETS, f"{sent} packets in {WINDOW_S:g} s of silence"


async def test_pjmedias_own_choices_can_still_be_configured(tmp_path: Path, bridge: LoopBridge) -> None:
    audio = AudioConfig(jitter_discard="progressive", silence_suppression=True)
    stats, sent = await _silent_call(tmp_path, "b", bridge, audio)
    assert stats.jbuf_discard_algo == PJMEDIA_JB_DISCARD_PROGRESSIVE
    assert stats.vad is True, stats
    # The VAD's effect: a silent microphone is (mostly) not sent. 0 packets a second on the paced card since its
    # sinks stopped rewinding (16 before: the rewinds' re-rendered blocks flipped the detector to "talk").
    assert sent < SOME_PACKETS, f"{sent} packets in {WINDOW_S:g} s of silence with the VAD on"


async def _silent_call(base: Path, run: str, bridge: LoopBridge, audio: AudioConfig) -> tuple[StreamStats, int]:
    """A talk call whose microphone hears nothing: its stream's figures, and the packets it sent over WINDOW_S
    once the VAD's start-up suspension is over."""
    tmp = base / run
    tmp.mkdir()
    resident = write_tones_wav(tmp / "resident.wav", [(RESIDENT_HZ, 30.0)])
    with paced_card_as_default(tmp / "card"), Baresip(base, user=run, audio_source=resident) as phone:
        async with SipEngine(make_config(), bridge, audio) as engine:
            log = EventLog(engine)
            call = await dial_onto_the_card(engine, phone, log)
            await anyio.sleep(VAD_SUSPEND_S + 1.4)  # a stream's clock: nothing to wait on
            before = await engine.stream_stats(call)
            await anyio.sleep(WINDOW_S)
            after = await engine.stream_stats(call)
            await engine.hangup(call)
            await log.wait(CallEnded, call)
    assert before is not None and after is not None, "the call had no active audio stream"
    return after, after.tx_packets - before.tx_packets
