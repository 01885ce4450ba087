"""pjmedia opens the panel's sound card only while a call exists: an idle panel holds no playback stream (so
nothing clocks the conference, and PortAudio's prompts have the card to themselves), a call opens it once, and
the next call opens it again after the last one closed it (docs/pjsua2.md, "The conference clock runs only
with a call").

Skipped without PulseAudio or baresip, or on a pjsua2 without a sound device (the wheel).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.simulation.paced_card import PacedCard, paced_card_as_default
from daemon.sip import CallEnded, SipEngine
from hw.settings import AudioConfig
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip
from tests.talk._support import dial_onto_the_card, playback_streams_of_this_process

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pulseaudio", "baresip")), reason="needs pulseaudio and baresip"
    ),
]


@pytest.fixture
def card(tmp_path: Path) -> Iterator[PacedCard]:
    """The paced card as this process's ALSA default: pjmedia lists devices at libInit, so set before it."""
    with paced_card_as_default(tmp_path / "card") as running:
        yield running


async def test_the_card_is_open_only_during_a_call(card: PacedCard, tmp_path: Path, bridge: LoopBridge) -> None:
    with Baresip(tmp_path) as phone:
        async with SipEngine(make_config(), bridge, AudioConfig()) as engine:
            if not engine.has_sound_device:
                pytest.skip(f"this pjsua2 has no sound device ({engine.info})")
            await engine.ping()
            assert not engine.media_clock_running
            assert playback_streams_of_this_process(card) == 0, "the card is open with no call"
            log = EventLog(engine)
            for _ in range(2):
                call = await dial_onto_the_card(engine, phone, log)
                assert engine.media_clock_running
                assert playback_streams_of_this_process(card) == 1
                await engine.hangup(call)
                await log.wait(CallEnded, call)
                await phone.wait_event("CALL_CLOSED", 5)
                with anyio.fail_after(3):
                    while engine.media_clock_running:
                        await engine.ping()  # a turn of the owner: it closes the card once the grace is over
                        await anyio.sleep(0.05)
                assert playback_streams_of_this_process(card) == 0, "the card stayed open after the call"
