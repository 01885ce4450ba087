"""The speaker's route: it hands the card to a call only once PortAudio has let go of it (any pjsua2 build: the
call's connection is the caller's, here it only looks at the card), and sends nothing to PortAudio while a call
holds the card (a source build). On the paced card, where a prompt takes its real time and PulseAudio lists each
open stream."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from daemon.sip import CallEnded, MediaActive, SipEngine
from daemon.speaker_route import SpeakerRoute
from hw.settings import AudioConfig
from hw.speaker import Speaker, tone
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import playback_streams_of_this_process

pytestmark = pytest.mark.skipif(shutil.which("pulseaudio") is None, reason="needs Debian's pulseaudio")


@pytest.fixture
def card(tmp_path: Path) -> Iterator[PacedCard]:
    with paced_card_as_default(tmp_path / "card") as running:
        yield running


async def test_a_call_gets_the_card_only_after_the_prompt_closed_its_stream(card: PacedCard, tmp_path: Path) -> None:
    """As a visit does when the resident answers: the waiting prompt is cancelled and the call's audio connected
    at once. The connection must find no PortAudio stream on the card (a Pi's ``hw:`` device opens once)."""
    speaker = Speaker(AudioConfig(frames_per_buffer=256))
    route = SpeakerRoute(speaker)
    pcm, fmt = tone(440, 5.0)
    wav = tmp_path / "unused.wav"  # no engine: the route never reaches pjsua2's player
    streams_at_connect: list[int] = []

    async def connect() -> str:
        streams_at_connect.append(await anyio.to_thread.run_sync(playback_streams_of_this_process, card))
        return "connected"

    try:
        async with anyio.create_task_group() as visit:
            prompt = anyio.CancelScope()

            async def waiting_prompt() -> None:
                with prompt:
                    await route.play_prompt(pcm, fmt, wav)

            visit.start_soon(waiting_prompt)
            with anyio.fail_after(10):
                while not speaker.playing or playback_streams_of_this_process(card) == 0:
                    await anyio.sleep(0.05)  # PortAudio opening the card: nothing to wait on but the server's list
            prompt.cancel()  # the resident answered
            with anyio.fail_after(10):
                assert await route.hand_over_to_talk(connect) == "connected"
    finally:
        speaker.close()
    assert streams_at_connect == [0], "the call's audio was connected while PortAudio still had the card open"
    assert route.portaudio_prompts == 1 and route.conference_prompts == 0


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip")
async def test_while_a_call_holds_the_card_clicks_are_dropped_and_prompts_join_the_call(
    card: PacedCard, tmp_path: Path, bridge: LoopBridge
) -> None:
    """A source build: the route sends nothing to PortAudio while the call's audio is on the card."""
    speaker = Speaker(AudioConfig(frames_per_buffer=256))
    click, click_fmt = tone(2400, 0.035)
    prompt, prompt_fmt = tone(1500, 0.5, 16000)
    wav = write_tones_wav(tmp_path / "prompt.wav", [(1500, 0.5)], rate=16000)
    try:
        with Baresip(tmp_path) as phone:
            async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
                if engine.has_sound_device:
                    route = SpeakerRoute(speaker, engine)
                    log = EventLog(engine)
                    call = await engine.dial(phone.uri, ring_timeout=10)
                    await log.wait(MediaActive, call)
                    await route.hand_over_to_talk(partial(engine.connect_sound_device, call))
                    assert route.talk_owns_card
                    assert await route.play_tone(click, click_fmt) is None
                    assert await route.play_prompt(prompt, prompt_fmt, wav) is None
                    streams = playback_streams_of_this_process(card)
                    await engine.hangup(call)
                    await log.wait(CallEnded, call)
        if not engine.has_sound_device:
            pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
    finally:
        speaker.close()
    assert (route.portaudio_prompts, route.conference_prompts) == (0, 1)
    assert not speaker.latencies, "PortAudio wrote to the card during the call"
    assert streams == 1
