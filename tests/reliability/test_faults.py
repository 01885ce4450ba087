"""Faults the panel must survive without a restart: for each, what the visitor hears, what is logged, and
that the next visit works. The whole daemon runs in-process (tests/scenario/conftest.py) against real
kamailio, baresip and sipp on 127.0.0.1.

Not repeated here (engine level, already in tests/sip): each failure status reported (test_calls.py),
bad credentials and re-registration after a registrar restart (test_registration.py), a raising pjsua2
callback (test_lifecycle.py), INVITEs without SDP (test_inbound.py), 200 calls with racing hang-ups
(test_stress.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from daemon.sip import CallHandle, DtmfReceived
from tests.reliability._support import (
    apartment,
    capture_logs,
    config_with,
    history_rows,
    played,
    with_registrar,
)
from tests.scenario.conftest import Panel, run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip, Kamailio, Sipp, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


async def open_with_code(panel: Panel, phone: Baresip, code: str = "1", *, established: bool = False) -> None:
    if not established:
        await phone.wait_event("CALL_ESTABLISHED", 10)
    await anyio.sleep(0.3)
    for digit in code:
        phone.command("sndcode", digit)
        await anyio.sleep(0.3)  # digits closer than ~250 ms apart queue in pjsua
    await panel.until(lambda: panel.relay_energized, 5, "relay energized")


async def test_registrar_down_at_start_then_up_then_restarted(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    kamailio = Kamailio(tmp_path, users={"panel": "s3cret", "101": "r3sident"}, max_expires=6)
    base = config_with(tmp_path, prompt_cache, [apartment("101", kamailio.uri("101"))])
    config = with_registrar(base, kamailio.registrar)
    try:
        with capture_logs() as logs:
            async with run_panel(config) as panel:
                assert not panel.app.registered
                await panel.press()
                await panel.visit_done()
                assert played(panel)[-1] == "out_of_service"
                # Nothing answers the REGISTER: pjsip retransmits it (0.5, 1, 2, 4, 4... s) until its 32 s
                # transaction timeout, and only then reports 408 (then retries 5 s later, then every 30 s).
                kamailio.start()  # the PBX comes up later: a retransmission reaches it
                await panel.until(lambda: panel.app.registered, 15, "registered")
                assert logs.matching("registration up", "INFO")
                with Baresip(tmp_path, user="101", registrar=kamailio) as phone:
                    await anyio.sleep(1.2)  # the button hold-off since the first press
                    await panel.press()
                    await open_with_code(panel, phone)
                    await panel.visit_done(2)
                    # Mid-day restart: kamailio forgets every binding; both ends re-register on refresh.
                    kamailio.restart()
                    await anyio.sleep(7)  # > max_expires: both refreshed against the new process
                    await panel.until(lambda: panel.app.registered, 10, "registered again")
                    await anyio.sleep(1.2)  # the button hold-off
                    await panel.press()
                    await open_with_code(panel, phone)
                    await panel.visit_done(3)
                outcomes = [r.outcome for r in await panel.app.visit_history.recent(5)]
    finally:
        kamailio.stop()
    assert outcomes == ["door_opened", "door_opened", "out_of_service"]


async def test_registration_rejected_is_logged_and_the_visitor_hears_out_of_service(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Kamailio(tmp_path, users={"panel": "s3cret"}) as kamailio, capture_logs() as logs:
        config = with_registrar(
            config_with(tmp_path, prompt_cache, [apartment("101", kamailio.uri("101"))]),
            kamailio.registrar,
            password="wrong",
        )
        async with run_panel(config) as panel:
            await panel.until(lambda: bool(logs.matching("registration down", "ERROR")), 5, "rejection logged")
            await panel.press()
            await panel.visit_done()
            heard = played(panel)
    (line,) = logs.matching("registration down", "ERROR")[:1]
    assert " 401 " in line or " 403 " in line, line
    assert heard == ["out_of_service"]


@pytest.mark.parametrize(
    ("scenario", "prompt", "outcome"),
    [
        ("uas_busy", "busy", "busy"),
        ("uas_decline", "nobody_answered", "no_answer"),
        ("uas_not_found", "nobody_answered", "no_answer"),
        ("uas_unavailable", "nobody_answered", "no_answer"),
        ("uas_never_answer", "nobody_answered", "no_answer"),
        ("uas_answer_random_bye", "door_not_opened", "not_opened"),
    ],
)
async def test_resident_side_failures(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture, scenario: str, prompt: str, outcome: str
) -> None:
    with Sipp(tmp_path, scenario) as far, Baresip(tmp_path, user="201") as phone:
        apts = [apartment("101", far.uri("101"), buttons=("101",)), apartment("201", phone.uri, buttons=("concierge",))]
        config = config_with(tmp_path, prompt_cache, apts, ring_timeout_seconds=1.5)
        async with run_panel(config) as panel:
            await panel.press(17)
            await panel.visit_done(timeout=15)
            (record,) = await panel.app.visit_history.recent(5)
            heard = played(panel)
            assert not panel.relay_energized
            assert await panel.app.sip.live_calls() == []
            # Recovered: the next visit, to another apartment, opens the door.
            await panel.press(18)
            await open_with_code(panel, phone)
            await panel.visit_done(2)
    assert record.outcome == outcome and heard[-1] == prompt, (record, heard)


async def test_media_never_arrives_ends_at_the_media_timeout(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    # sipp answers and never sends RTP: the engine's media timeout ends the call long before max_call.
    with Sipp(tmp_path, "uas_answer_silent") as far:
        config = config_with(
            tmp_path,
            prompt_cache,
            [apartment("101", far.uri("101"))],
            sip={"media_timeout_seconds": 2},
            max_call_seconds=30,
        )
        async with run_panel(config) as panel:
            await panel.press()
            await panel.visit_done(timeout=15)
            (record,) = await panel.app.visit_history.recent(5)
            assert await panel.app.sip.live_calls() == []
            events, heard = panel.events(), played(panel)
    assert heard[-1] == "door_not_opened", heard
    hangups = [e["text"] for e in events if e["event"] == "HANGUP"]
    assert record.outcome == "not_opened" and hangups == ["408 media timeout (no RTP for 2 s)"], (record, hangups)
    assert "CALL_WARNING" not in [e["event"] for e in events]
    assert 1.5 < (record.call_seconds or 0) < 4


async def test_speaker_missing_calls_still_placed_and_door_opens(
    tmp_path: Path, prompt_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asound = tmp_path / "asound.conf"
    asound.write_text("pcm.!default { type hw card 97 device 0 }\nctl.!default { type hw card 97 }\n")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(asound))
    with Baresip(tmp_path, user="101") as phone, capture_logs() as logs:
        config = config_with(tmp_path, prompt_cache, [apartment("101", phone.uri)])
        async with run_panel(config) as panel:
            await panel.press()
            await open_with_code(panel, phone)
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.outcome == "door_opened"
    assert logs.matching("not played", "ERROR"), logs.text[-2000:]


async def test_history_unwritable_keeps_records_until_fixed(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    dead = free_port()
    config = with_registrar(
        config_with(tmp_path, prompt_cache, [apartment("101", f"sip:101@127.0.0.1:{dead}")]), f"sip:127.0.0.1:{dead}"
    )
    state = Path(config.paths.state_dir)
    (state / "history.sqlite3").mkdir(parents=True)  # a directory where the database file should be
    with capture_logs() as logs:
        async with run_panel(config) as panel:
            for n in range(1, 6):
                panel.app.visits.press("101")
                await panel.visit_done(n)
            backlog = panel.app.visit_history.backlog_size
            (state / "history.sqlite3").rmdir()  # the operator fixes it; no restart
            written = await panel.app.visit_history.flush()
            rows = history_rows(state)
    assert backlog == 5 and written and rows == 5
    assert len(logs.matching("cannot write", "ERROR")) == 1  # once per failure burst, not once per visit
    assert logs.matching("writable again")


async def test_corrupt_prompt_cache_is_rebuilt_at_start(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    async with run_panel(config_with(tmp_path, prompt_cache, [apartment("101", "sip:101@127.0.0.1:9")])):
        pass  # make sure the shared cache is complete
    cache = tmp_path / "cache"
    shutil.copytree(prompt_cache, cache)
    wavs = sorted(cache.rglob("*.wav"))
    victim = wavs[0]
    size = victim.stat().st_size
    with victim.open("r+b") as f:
        f.truncate(size // 3)
    config = config_with(tmp_path, cache, [apartment("101", "sip:101@127.0.0.1:9")])
    with capture_logs() as logs:
        async with run_panel(config) as panel:
            pcm = panel.app.prompts.speaker_pcm("waiting")
    assert logs.matching("rebuilding it", "WARNING"), logs.text[-2000:]
    assert victim.stat().st_size == size and len(pcm.data) > 8000


async def test_sip_events_for_unknown_calls_and_a_raising_callback(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone, capture_logs() as logs:
        config = config_with(tmp_path, prompt_cache, [apartment("101", phone.uri)])
        async with run_panel(config) as panel:
            stranger = CallHandle(999_999, 3, "outgoing", "sip:mallory@127.0.0.1")
            for digit in "1#1":  # DTMF for a call no visit owns, idle and during a visit
                panel.app.sip._deliver(DtmfReceived(stranger, digit, "rfc2833"))
            panel.app.sip._set_fault_once()  # the next pjsua2 callback raises inside the engine
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            panel.app.sip._deliver(DtmfReceived(stranger, "1", "rfc2833"))
            await anyio.sleep(0.5)
            assert not panel.relay_energized
            await open_with_code(panel, phone, established=True)
            await panel.visit_done()
            assert await panel.app.sip.live_calls() == []
            faults = panel.app.sip.fault_counters
    assert faults[1] == 1
    assert len(logs.matching("DTMF from a call no visit owns", "WARNING")) == 4


async def test_call_slots_full_is_a_local_dial_failure_never_nobody_answered(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    # One call slot, taken by a manual call: the visit's INVITE cannot even be sent (pjsua: PJ_ETOOMANY).
    with Baresip(tmp_path, user="a") as holder:
        config = config_with(tmp_path, prompt_cache, [apartment("101", "sip:101@127.0.0.1:9")], sip={"max_calls": 1})
        async with run_panel(config) as panel:
            await panel.app.dial(holder.uri)
            await holder.wait_event("CALL_ESTABLISHED", 10)
            await panel.press()
            await panel.visit_done(timeout=15)
            (record,) = await panel.app.visit_history.recent(5)
            events, heard = panel.events(), played(panel)
            await panel.app.hangup()
    names = [e["event"] for e in events]
    assert record.outcome == "dial_failed" and "no call could be placed" in record.failure, record
    assert heard[-1] == "out_of_service" and "nobody_answered" not in heard, heard
    assert "DIAL_FAILED" in names and "RINGING" not in names, names
