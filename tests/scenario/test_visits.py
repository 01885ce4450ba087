"""Visits end to end: press -> prompt -> call -> DTMF -> relay, through the real stack."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import Apartment, default_config_text, parse_config
from tests.scenario.conftest import run_panel, scenario_config
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


def apartment(*residents: str, **kw: object) -> Apartment:
    return Apartment(name="101", buttons=("101",), residents=residents, codes=("1",), **kw)  # type: ignore[arg-type]


async def test_answered_right_code_opens_the_door_then_hangs_up(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    # Answered by hand 0.4 s after it rings: an auto-answer within ~5 ms stops the waiting prompt before
    # PortAudio has handed ALSA more than its silence priming, and the check below would have nothing to see.
    with Baresip(tmp_path, user="101", answermode="manual") as phone:
        config = scenario_config(tmp_path, prompt_cache, [apartment(phone.uri)])
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_INCOMING", 10)
            await anyio.sleep(0.4)
            phone.accept()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            phone.command("sndcode", "1")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await phone.wait_event("CALL_CLOSED", 10)  # the panel hangs up after hangup_after_open
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
            names = panel.names()
            door_open = panel.app.prompts.speaker_pcm("door_open").data
    assert record.outcome == "door_opened" and record.door_opened and record.answered_by == phone.uri
    for name in ("BUTTON_PRESSED", "CALL_START", "ANSWERED", "DTMF", "DOOR_OPEN", "HANGUP", "OUTCOME"):
        assert name in names, names
    assert names.index("CALL_START") < names.index("ANSWERED") < names.index("DOOR_OPEN")
    # The visitor heard the wait prompt: the samples ALSA received start with the prompt's own samples.
    waiting = panel.app.prompts.speaker_pcm("waiting").data
    assert speaker.all_frames()[:8000] == waiting[:8000]
    # ... and "porta aberta" whole: it outlives the call it began in (the hang-up comes 1 s after opening).
    assert door_open in speaker.all_frames()
    # The code never reaches the log: DTMF is masked.
    assert all(e["text"].endswith("*") for e in panel.events() if e["event"] == "DTMF")


async def test_wrong_codes_lock_out_and_the_door_stays_shut(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        config = scenario_config(tmp_path, prompt_cache, [apartment(phone.uri)], wrong_code_limit=3)
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            for _ in range(3):
                phone.command("sndcode", "7")
                await anyio.sleep(0.4)  # digits closer than ~250 ms apart queue in pjsua
            await panel.until(lambda: "LOCKOUT" in panel.names(), 5, "lockout logged")
            phone.command("sndcode", "1")  # the right code, but locked out now
            await anyio.sleep(1.0)
            assert not panel.relay_energized
            phone.hangup()
            await panel.visit_done()
            names = panel.names()
            (record,) = await panel.app.visit_history.recent(5)
    assert names.count("CODE_REJECTED") >= 4 and "DOOR_OPEN" not in names
    assert record.outcome == "not_opened" and not record.door_opened


async def test_nobody_answers_then_fallback_then_nobody_answered(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with (
        Baresip(tmp_path, user="101", answermode="manual") as phone,
        Baresip(tmp_path, user="concierge", answermode="manual") as concierge,
    ):
        apt = apartment(phone.uri, fallback=concierge.uri)
        config = scenario_config(tmp_path, prompt_cache, [apt], ring_timeout_seconds=1.5)
        async with run_panel(config) as panel:
            await panel.press()
            await concierge.wait_event("CALL_INCOMING", 10)  # the fallback rings only after the resident
            await panel.visit_done(timeout=30)
            (record,) = await panel.app.visit_history.recent(5)
            played = [e["text"] for e in panel.events() if e["event"] == "PLAYBACK_START"]
    assert record.outcome == "no_answer"
    assert played[:3] == ["waiting", "calling_next", "nobody_answered"]


async def test_parallel_group_second_leg_answers_and_the_first_is_cancelled(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="a", answermode="manual") as a, Baresip(tmp_path, user="b", answermode="manual") as b:
        config = scenario_config(tmp_path, prompt_cache, [apartment(a.uri, b.uri)])
        async with run_panel(config) as panel:
            await panel.press()
            await a.wait_event("CALL_INCOMING", 10)
            await b.wait_event("CALL_INCOMING", 10)
            b.accept()
            await b.wait_event("CALL_ESTABLISHED", 10)
            await a.wait_event("CALL_CLOSED", 10)  # cancelled at once when b answered
            b.hangup()
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.answered_by == b.uri and record.outcome == "not_opened"


async def test_sequential_hunt_rings_one_after_the_other(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="a", answermode="manual") as a, Baresip(tmp_path, user="b") as b:
        apt = apartment(a.uri, b.uri, strategy="sequential")
        config = scenario_config(tmp_path, prompt_cache, [apt], ring_timeout_seconds=1.5)
        async with run_panel(config) as panel:
            await panel.press()
            await a.wait_event("CALL_INCOMING", 10)
            await b.wait_event("CALL_ESTABLISHED", 10)
            a_closed = [e for e in a.all_events if e.get("type") == "CALL_CLOSED"]
            await anyio.sleep(0.3)
            b.command("sndcode", "1")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert a_closed, "the first resident's leg ended before the second rang"
    assert record.answered_by == b.uri and record.outcome == "door_opened"


async def test_resident_hangs_up_before_the_scheduled_hang_up(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone:
        config = scenario_config(tmp_path, prompt_cache, [apartment(phone.uri)])
        config = config.__class__(
            **{
                **config.__dict__,
                "timing": config.timing.__class__(**{**config.timing.__dict__, "hangup_after_open_seconds": 30.0}),
            }
        )
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            phone.command("sndcode", "1")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            phone.hangup()
            # The 30 s hang-up timer must be cancelled with the call: the visit ends now, not in 30 s.
            await panel.visit_done(timeout=10)
            (record,) = await panel.app.visit_history.recent(5)
            assert panel.app.visits.current is None
    assert record.outcome == "door_opened"


async def test_registrar_down_says_out_of_service_at_once(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    dead = free_port()  # nothing listens there
    config = scenario_config(tmp_path, prompt_cache, [apartment(f"sip:101@127.0.0.1:{dead}")])
    account = config.sip.account.__class__(
        uri="sip:panel@127.0.0.1", registrar=f"sip:127.0.0.1:{dead}", username="panel", password="x"
    )
    config = config.__class__(
        **{**config.__dict__, "sip": config.sip.__class__(**{**config.sip.__dict__, "account": account})}
    )
    async with run_panel(config) as panel:
        pressed = time.monotonic()
        await panel.press()
        await panel.until(
            lambda: "out_of_service" in [e["text"] for e in panel.events() if e["event"] == "PLAYBACK_START"],
            3,
            "out of service",
        )
        heard_after = time.monotonic() - pressed
        await panel.visit_done()
        (record,) = await panel.app.visit_history.recent(5)
    assert record.outcome == "out_of_service"
    assert heard_after < 1.5  # "within a second" of the press, with slack for a loaded CI machine


async def test_visit_deadline_tears_everything_down(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    with Baresip(tmp_path, user="101", answermode="manual") as phone:
        config = scenario_config(
            tmp_path, prompt_cache, [apartment(phone.uri)], ring_timeout_seconds=30, visit_deadline_seconds=2
        )
        async with run_panel(config) as panel:
            await panel.press()
            await phone.wait_event("CALL_INCOMING", 10)
            await phone.wait_event("CALL_CLOSED", 10)
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
            assert not panel.relay_energized
    assert record.outcome == "deadline"


async def test_a_visitor_refused_while_another_visit_runs_hears_why(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101", answermode="manual") as phone:
        apts = [
            apartment(phone.uri),
            Apartment(name="concierge", buttons=("concierge",), residents=("sip:c@127.0.0.1:9",)),
        ]
        config = scenario_config(tmp_path, prompt_cache, apts, ring_timeout_seconds=1.5, other_apartment_press="refuse")
        config = replace(config, buttons=parse_config(default_config_text()).buttons)  # GPIO17 and GPIO18
        async with run_panel(config) as panel:
            await panel.press(17)
            await phone.wait_event("CALL_INCOMING", 10)
            await panel.press(18)  # the other apartment's button while the first visit rings
            await panel.visit_done(timeout=30)
            busy = panel.app.prompts.speaker_pcm("panel_busy").data
            names = panel.names()
    assert "PRESS_REFUSED" in names and names.count("OUTCOME") == 1
    assert busy in speaker.all_frames()  # heard whole, on the panel's one speaker
