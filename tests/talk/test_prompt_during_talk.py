"""A prompt on the panel's speaker during a talk call, on a source build: pjmedia owns the card, so the prompt goes
through pjsua2's conference into the sound device's playback port (``SipEngine.play_local``), mixed with the
resident's voice, while the visitor still reaches the resident, and the card holds one playback stream from this
process. Tones make each party recognisable: the resident 1000 Hz, the prompt 1500 Hz, the visitor 600 Hz.

Skipped without PulseAudio or baresip, or on a pjsua2 without a sound device (the wheel).
"""

from __future__ import annotations

import shutil
import wave
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from benchmarks.aec_speech import read_wav
from daemon.bridge import LoopBridge
from daemon.errors import SipError
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from daemon.sip import CallEnded, SipEngine
from daemon.sip.types import LocalPromptEnd, LocalPromptEnded
from hw.settings import AudioConfig
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import SLICE_S, dial_onto_the_card, playback_streams_of_this_process, tone_slices

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pulseaudio", "baresip")), reason="needs Debian's pulseaudio, baresip"
    ),
]

RESIDENT_HZ, PROMPT_HZ, VISITOR_HZ = 1000, 1500, 600
PROMPT_S = 2.0


@pytest.fixture
def card(tmp_path: Path) -> Iterator[PacedCard]:
    with paced_card_as_default(tmp_path / "card") as running:
        yield running


def _wav_rate(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return w.getframerate()


async def test_a_prompt_during_talk_is_mixed_with_the_call_on_one_card_stream(
    card: PacedCard, tmp_path: Path, bridge: LoopBridge
) -> None:
    resident = write_tones_wav(tmp_path / "resident.wav", [(RESIDENT_HZ, 60.0)])
    prompt = write_tones_wav(tmp_path / "prompt.wav", [(PROMPT_HZ, PROMPT_S)], rate=16000)
    visitor = write_tones_wav(tmp_path / "visitor.wav", [(VISITOR_HZ, PROMPT_S)], rate=16000)
    ended: list[LocalPromptEnded] = []
    with Baresip(tmp_path, audio_source=resident) as phone:
        async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
            if not engine.has_sound_device:
                pytest.skip(f"this pjsua2 has no sound device ({engine.info}): the talk path needs a source build")
            log = EventLog(engine)
            with card.record_speaker(tmp_path / "speaker.wav") as speaker:
                call = await dial_onto_the_card(engine, phone, log)
                assert engine.talk_holds_sound_device
                await anyio.sleep(1.0)  # the resident's voice alone first

                async def play() -> None:
                    ended.append(await engine.play_local(str(prompt), limit=PROMPT_S + 5))

                with card.talk(visitor):  # the visitor talks over the prompt
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(play)
                        await anyio.sleep(PROMPT_S / 2)
                        streams = await anyio.to_thread.run_sync(playback_streams_of_this_process, card)
                await anyio.sleep(1.0)  # the resident alone again; the visitor's last frames cross
                await engine.hangup(call)
                await log.wait(CallEnded, call)
    assert streams == 1, f"{streams} playback streams from this process while the prompt played in the call"
    [result] = ended
    assert result.end is LocalPromptEnd.FINISHED
    assert PROMPT_S - 0.3 < result.seconds < PROMPT_S + 1.0  # real time on the paced card
    heard = read_wav(speaker)
    prompt_slices = tone_slices(heard, 16000, PROMPT_HZ)
    resident_slices = tone_slices(heard, 16000, RESIDENT_HZ)
    assert prompt_slices.sum() * SLICE_S >= PROMPT_S - 0.3, "the prompt was not heard whole at the gate"
    # While the prompt played, the resident's voice went on reaching the speaker: both tones in the same slices.
    both = (prompt_slices & resident_slices).sum() / prompt_slices.sum()
    assert both >= 0.8, f"the resident was heard in only {both:.0%} of the prompt's slices"
    # ... and after it: the prompt's end took nothing away from the call. (What came before it may be missing from
    # the recording: the card's first output lags the connection by its prebuffer, more on a busy machine.)
    after = resident_slices[np.flatnonzero(prompt_slices)[-1] + 1 :]
    assert after.sum() * SLICE_S >= 0.5, f"the resident was heard for {after.sum() * SLICE_S:.2f} s after the prompt"
    # The visitor, who spoke only while the prompt played, reached the resident.
    [received] = phone.received_recordings()
    said = tone_slices(read_wav(received), _wav_rate(received), VISITOR_HZ).sum() * SLICE_S
    assert said >= PROMPT_S / 2, f"only {said:.1f} s of the visitor reached the resident"


async def test_a_local_prompt_is_refused_while_no_call_holds_the_card(
    card: PacedCard, tmp_path: Path, bridge: LoopBridge
) -> None:
    """Outside calls the card belongs to PortAudio: a player on the sound device's port would open it a second time."""
    prompt = write_tones_wav(tmp_path / "prompt.wav", [(PROMPT_HZ, 0.5)], rate=16000)
    async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
        if not engine.has_sound_device:
            pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
        with pytest.raises(SipError, match="the sound card is not pjmedia's"):
            await engine.play_local(str(prompt), limit=5)
        assert playback_streams_of_this_process(card) == 0
        assert not engine.talk_holds_sound_device


async def test_cancelling_a_local_prompt_stops_it_within_a_tick(
    card: PacedCard, tmp_path: Path, bridge: LoopBridge
) -> None:
    prompt = write_tones_wav(tmp_path / "prompt.wav", [(PROMPT_HZ, 10.0)], rate=16000)
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
            if not engine.has_sound_device:
                pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
            log = EventLog(engine)
            with card.record_speaker(tmp_path / "speaker.wav") as speaker:
                call = await dial_onto_the_card(engine, phone, log)
                await anyio.sleep(1.0)  # the card is streaming: the prompt's whole second reaches it
                with anyio.move_on_after(1.0):
                    await engine.play_local(str(prompt), limit=20)
                await anyio.sleep(1.0)  # the card plays on: the prompt must not
                await engine.hangup(call)
                await log.wait(CallEnded, call)
    heard = tone_slices(read_wav(speaker), 16000, PROMPT_HZ)
    assert heard.any(), "the prompt never played"
    # Heard for about the second it was allowed (plus the card's buffering, and however late a loaded machine
    # started it), never the 10 s of the file; and silent from 2.5 s after it was first heard.
    assert heard.sum() * SLICE_S <= 2.5, f"{heard.sum() * SLICE_S:.2f} s of the prompt heard"
    assert not np.any(heard[int(2.5 / SLICE_S) + np.argmax(heard) :])


async def test_a_prompt_outlives_its_call_and_keeps_the_card_until_it_ends(
    card: PacedCard, tmp_path: Path, bridge: LoopBridge
) -> None:
    """'porta aberta' goes on after the hang-up that follows the opening: the card stays pjmedia's until it ends
    (PortAudio must not open it meanwhile), and a prompt asked for meanwhile joins it in the conference. (When the
    card goes back to PortAudio after that depends on when pjmedia closes it: never with sndAutoCloseTime -1.)"""
    long_prompt = write_tones_wav(tmp_path / "long.wav", [(PROMPT_HZ, 3.0)], rate=16000)
    short_prompt = write_tones_wav(tmp_path / "short.wav", [(VISITOR_HZ, 0.5)], rate=16000)
    ended: list[LocalPromptEnded] = []
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
            log = EventLog(engine)
            call = await dial_onto_the_card(engine, phone, log)

            async def play_long() -> None:
                ended.append(await engine.play_local(str(long_prompt), limit=10))

            async with anyio.create_task_group() as tg:
                tg.start_soon(play_long)
                await anyio.sleep(0.5)
                await engine.hangup(call)
                await log.wait(CallEnded, call)
                assert engine.talk_holds_sound_device, "the card was given up under a prompt still playing"
                short = await engine.play_local(str(short_prompt), limit=5)
                assert engine.talk_holds_sound_device
    assert short.end is LocalPromptEnd.FINISHED
    [long] = ended
    assert long.end is LocalPromptEnd.FINISHED and long.seconds >= 2.7
