"""The talk pump through the real stack (pyaudio -> PortAudio -> ALSA's file plugin), fed by an AudioBridge
the way the SIP engine's talk port feeds it."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from daemon.sip.audio_bridge import AudioBridge, FrameQueue
from hw.settings import AudioConfig
from hw.speaker import Speaker
from hw.talk import TalkPump
from tests.support.alsa import AlsaCapture

pytestmark = pytest.mark.anyio


def test_frame_queue_drops_the_oldest_and_never_blocks_the_producer() -> None:
    q = FrameQueue(3)
    for i in range(5):
        q.put(bytes([i]))
    assert q.dropped == 2 and len(q) == 3
    assert [q.get_nowait() for _ in range(4)] == [b"\x02", b"\x03", b"\x04", None]
    q.close()
    started = time.monotonic()
    assert q.get(1.0) is None and time.monotonic() - started < 0.1  # closed: no wait


async def test_call_audio_reaches_alsa_even_without_a_microphone(alsa_capture: AlsaCapture) -> None:
    config = AudioConfig(input_device="no-such-microphone")
    speaker = Speaker(config)
    pump = TalkPump(config, speaker=speaker)
    bridge = AudioBridge()
    frames = [bytes([i, 0]) * bridge.samples_per_frame for i in range(1, bridge.queue_frames + 1)]
    for frame in frames:
        bridge.received.put(frame)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump.run, bridge)
            with anyio.fail_after(5):
                while len(bridge.received):  # polled: the pump is a thread, it has no anyio Event
                    await anyio.sleep(0.01)
            bridge.close()
    finally:
        speaker.close()
    assert pump.last is not None and pump.last.output_ok and not pump.last.input_ok
    assert alsa_capture.last().frames[: len(frames) * len(frames[0])] == b"".join(frames)


async def test_cancelling_the_talk_ends_it_within_a_frame_and_frees_the_speaker(
    alsa_capture: AlsaCapture, tmp_path: Path
) -> None:
    config = AudioConfig()
    speaker = Speaker(config)
    pump = TalkPump(config, speaker=speaker)
    bridge = AudioBridge()  # nothing arrives: the pump writes silence, paced by its frame timeout
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump.run, bridge)
            await anyio.sleep(0.3)
            assert speaker.turn.locked()  # a prompt would wait for the talk to end
            started = time.monotonic()
            tg.cancel_scope.cancel()
        stopped = time.monotonic() - started
    finally:
        speaker.close()
    assert not speaker.turn.locked()
    assert stopped < 0.2, stopped


async def test_a_missing_speaker_during_a_call_shows_in_its_health(alsa_capture: AlsaCapture) -> None:
    config = AudioConfig(output_device="no-such-speaker")
    speaker = Speaker(config)
    pump = TalkPump(config, speaker=speaker)
    bridge = AudioBridge()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump.run, bridge)
            with anyio.fail_after(5):
                while pump.last is None and speaker.health().detail == "not checked yet":
                    await anyio.sleep(0.01)  # polled: the pump is a thread, it has no anyio Event
            bridge.close()
    finally:
        speaker.close()
    assert pump.last is not None and not pump.last.output_ok and pump.last.input_ok
    health = speaker.health()
    assert not health.ok and "no-such-speaker" in health.detail and "talk" in health.detail, health
