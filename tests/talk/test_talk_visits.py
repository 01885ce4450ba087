"""Talk visits through the whole daemon on the paced card: the resident's voice reaches the gate's speaker and
the visitor's reaches the resident, for a visit the panel calls out and for an allowlisted inbound call.

There is one talk path (docs/audio.md, "Decision"): pjmedia's sound device on the card during the call. The
resident (baresip) sends a 1000 Hz tone, the visitor speaks a 600 Hz tone into the card's microphone.
Skipped without PulseAudio or baresip, or on a pjsua2 without a sound device.
"""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from benchmarks.aec_speech import read_wav
from daemon.config import Apartment
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from tests.scenario.conftest import Panel, run_panel, scenario_config
from tests.support.peers import Baresip, write_tones_wav
from tests.talk._support import (
    NEEDS_PULSE_AND_BARESIP,
    RATE,
    RESIDENT_HZ,
    SLICE_S,
    VISITOR_HZ,
    playback_streams_of_this_process,
    skip_without_sound_device,
    tone_slices,
)

pytestmark = NEEDS_PULSE_AND_BARESIP


async def test_a_talk_visit_carries_audio_both_ways(tmp_path: Path, prompt_cache: Path) -> None:
    resident = write_tones_wav(tmp_path / "resident.wav", [(RESIDENT_HZ, 60.0)])
    visitor = write_tones_wav(tmp_path / "visitor.wav", [(VISITOR_HZ, 30.0)], rate=RATE)
    with (
        paced_card_as_default(tmp_path / "card") as card,
        Baresip(tmp_path, user="101", audio_source=resident) as phone,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        config = scenario_config(tmp_path, prompt_cache, [apt])
        with card.record_speaker(tmp_path / "speaker.wav") as speaker:
            async with run_panel(config) as panel:
                if panel.app.sip.has_sound_device:
                    await panel.press()
                    await phone.wait_event("CALL_ESTABLISHED", 10)
                    await _talk(panel, card, visitor)
                    phone.hangup()
                    await panel.visit_done()
                    assert panel.app.sip.fault_counters == (0, 0)
        skip_without_sound_device(panel)
    _assert_heard_both_ways(speaker, phone, "resident")


async def test_an_inbound_concierge_call_talks_both_ways(
    tmp_path: Path, prompt_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An allowlisted inbound call is connected to the card as soon as it is answered, which can be before its
    media is up: the card must still join the call when the media comes (it once failed with 'no active audio
    media' and the concierge and the visitor did not hear each other)."""
    concierge_voice = write_tones_wav(tmp_path / "voice.wav", [(RESIDENT_HZ, 60.0)])
    visitor = write_tones_wav(tmp_path / "visitor.wav", [(VISITOR_HZ, 30.0)], rate=RATE)
    with (
        paced_card_as_default(tmp_path / "card") as card,
        Baresip(tmp_path, user="concierge", audio_source=concierge_voice) as concierge,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), codes=("1",))
        config = scenario_config(tmp_path, prompt_cache, [apt])
        config = replace(
            config,
            inbound_codes=("9",),
            sip=replace(config.sip, inbound_allow=("sip:concierge@127.0.0.1",), inbound_sources=("127.0.0.1",)),
        )
        with card.record_speaker(tmp_path / "speaker.wav") as speaker:
            async with run_panel(config) as panel:
                if panel.app.sip.has_sound_device:
                    concierge.command("dial", f"sip:panel@127.0.0.1:{config.sip.port}")
                    await concierge.wait_event("CALL_ESTABLISHED", 10)
                    await _talk(panel, card, visitor)
                    concierge.hangup()
                    await panel.visit_done()
                    assert panel.app.sip.fault_counters == (0, 0)
        skip_without_sound_device(panel)
    assert not [r for r in caplog.records if "connect audio" in r.getMessage() or "connecting audio" in r.getMessage()]
    _assert_heard_both_ways(speaker, concierge, "concierge")


async def test_the_selftest_leaves_the_card_to_a_call_and_beeps_after_it(tmp_path: Path, prompt_cache: Path) -> None:
    """The self-test's speaker tone goes through the speaker route: during a talk call it is not played (PortAudio
    would open the card a second time, and the visitor would hear a beep), after the call it is."""
    resident = write_tones_wav(tmp_path / "resident.wav", [(RESIDENT_HZ, 60.0)])
    with (
        paced_card_as_default(tmp_path / "card") as card,
        Baresip(tmp_path, user="101", audio_source=resident) as phone,
    ):
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="talk")
        config = scenario_config(tmp_path, prompt_cache, [apt])
        async with run_panel(config) as panel:
            if panel.app.sip.has_sound_device:
                await panel.press()
                await phone.wait_event("CALL_ESTABLISHED", 10)
                await panel.until(lambda: panel.app.sip.talk_holds_sound_device, 5, "the call's audio on the card")
                buffers = len(panel.app.panel.speaker.latencies)
                during = {row.check: row for row in await panel.app.selftest()}
                streams = await anyio.to_thread.run_sync(playback_streams_of_this_process, card)
                assert len(panel.app.panel.speaker.latencies) == buffers  # PortAudio wrote nothing
                phone.hangup()
                await panel.visit_done()
                await panel.until(lambda: not panel.app.sip.talk_holds_sound_device, 5, "the card released")
                after = {row.check: row for row in await panel.app.selftest()}
        skip_without_sound_device(panel)
    assert during["speaker"].passed and "not played: a call's audio has the sound card" in during["speaker"].detail
    assert streams == 1, "the self-test opened the card a second time during the call"
    assert after["speaker"].passed and "frames to" in after["speaker"].detail


async def _talk(panel: Panel, card: PacedCard, visitor: Path) -> None:
    """The call holds the card; the visitor speaks for 4 s while the resident's tone plays."""
    await panel.until(lambda: panel.app.sip.talk_holds_sound_device, 5, "the call's audio on the card")
    with card.talk(visitor):
        await anyio.sleep(4.0)  # resident and visitor talk


def _assert_heard_both_ways(speaker: Path, phone: Baresip, who: str) -> None:
    """The phone's 1000 Hz tone reached the gate's speaker, and the visitor's 600 Hz the phone."""
    heard = tone_slices(read_wav(speaker), RATE, RESIDENT_HZ)
    assert heard.sum() * SLICE_S >= 1.0, f"only {heard.sum() * SLICE_S:.1f} s of the {who}'s tone reached the gate"
    [recording] = phone.received_recordings()
    with wave.open(str(recording), "rb") as w:
        rate = w.getframerate()
    said = tone_slices(read_wav(recording), rate, VISITOR_HZ)
    assert said.sum() * SLICE_S >= 1.0, f"only {said.sum() * SLICE_S:.1f} s of the visitor reached the {who}"
