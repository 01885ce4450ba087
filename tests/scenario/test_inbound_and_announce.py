"""Inbound calls from the allowlist, and announce mode, through the real stack."""

from __future__ import annotations

from array import array
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import Apartment
from daemon.prompts import parse_wav, to_mono16
from tests.scenario.conftest import run_panel, scenario_config
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


async def test_allowlisted_concierge_calls_in_and_opens_with_its_code(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="concierge") as concierge, Baresip(tmp_path, user="101") as resident:
        apt = Apartment(name="101", buttons=("101",), residents=(resident.uri,), codes=("1",))
        config = scenario_config(tmp_path, prompt_cache, [apt])
        config = replace(
            config, inbound_codes=("9",), sip=replace(config.sip, inbound_allow=("sip:concierge@127.0.0.1",))
        )
        async with run_panel(config) as panel:
            concierge.command("dial", f"sip:panel@127.0.0.1:{config.sip.port}")
            await concierge.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            concierge.command("sndcode", "1")  # the apartment's code is not the concierge's
            await anyio.sleep(0.6)
            assert not panel.relay_energized
            concierge.command("sndcode", "9")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.outcome == "door_opened" and record.extra["inbound"] is True


async def test_caller_not_on_the_allowlist_is_refused_and_cannot_open(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="stranger") as stranger:
        apt = Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), codes=("1",))
        config = scenario_config(tmp_path, prompt_cache, [apt])
        config = replace(
            config, inbound_codes=("9",), sip=replace(config.sip, inbound_allow=("sip:concierge@127.0.0.1",))
        )
        async with run_panel(config) as panel:
            stranger.command("dial", f"sip:panel@127.0.0.1:{config.sip.port}")
            await stranger.wait_event("CALL_CLOSED", 10)
            stranger.command("sndcode", "9")
            await anyio.sleep(0.5)
            assert not panel.relay_energized
            assert panel.app.visits.completed == 0 and panel.app.visits.current is None
    assert not any(e.get("type") == "CALL_ESTABLISHED" for e in stranger.all_events)


async def test_announce_mode_plays_the_announcement_to_the_resident(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        apt = Apartment(name="101", buttons=("101",), residents=(phone.uri,), codes=("1",), mode="announce")
        config = scenario_config(tmp_path, prompt_cache, [apt])
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(2.5)  # the resident listens to the announcement
            phone.command("sndcode", "1")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
    (recording,) = phone.received_recordings()
    pcm = to_mono16(parse_wav(recording.read_bytes(), strict=False))
    samples = array("h", pcm.data)
    loud = sum(1 for s in samples if abs(s) > 1000)
    assert loud > pcm.rate // 2, "the resident heard (more than half a second of) the spoken announcement"
