"""Access PINs at the keypad, through the real stack on mock pins: '#', the PIN, '#' on the mock matrix, the hash
checked off the loop, the PIN's door pulsed, who/which door/how in the event log and history, and the panel-wide
guard: lockout, the alarm, and a PIN typed during the lockout not even evaluated."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.access import hash_pin, new_panel_salt
from daemon.config import AccessConfig, Apartment, Config, PinConfig, WindowConfig
from tests.scenario.conftest import Panel
from tests.scenario.test_keypad import keypad_config, run_keypad, two_doors
from tests.support.alsa import AlsaCapture

pytestmark = [pytest.mark.anyio]

SALT = new_panel_salt()
CLEANER, RESIDENT = "60537", "82914"


def pins_config(tmp_path: Path, cache: Path, *pins: PinConfig, **access: object) -> Config:
    apt = Apartment(name="101", buttons=("101",), residents=("sip:101@127.0.0.1:9",), number="101")
    config = two_doors(keypad_config(tmp_path, cache, apt))
    return replace(config, pins=pins, access=replace(AccessConfig(salt=SALT), **access))  # type: ignore[arg-type]


def logged(panel: Panel, text: str) -> bool:
    """Whether ``text`` is in the event log yet (it is created by the first event written)."""
    path = Path(panel.app.config.paths.state_dir) / "events.jsonl"
    return path.exists() and text in path.read_text()


def keypad_events(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if str(e["event"]).startswith(("PIN_", "DOOR_OPEN"))]


def assert_never_quoted(tmp_path: Path, *pins: str) -> None:
    """No PIN in the event log, the history database or anything else the daemon wrote in its state dir."""
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for pin in pins:
                assert pin.encode() not in blob, path


async def test_a_pin_opens_its_own_door_and_history_says_who_which_and_how(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    garage = PinConfig("Maria, apt 101", hash_pin(RESIDENT, SALT), doors=("garage",))
    async with run_keypad(pins_config(tmp_path, prompt_cache, garage)) as panel:
        social_pin, garage_pin = panel.factory.pin(27), panel.factory.pin(25)
        await panel.type(f"#{RESIDENT}#")
        await panel.until(lambda: bool(garage_pin.state), 5, "garage relay energized")
        social_pulsed = any(s.state for s in social_pin.states)
        await panel.app.visit_log.flush()
        assert await panel.app.visit_history.flush()
        (record,) = await panel.app.visit_history.recent(5)
        events = keypad_events(panel.events())
    assert not social_pulsed
    (opened,) = events
    assert (opened["event"], opened["target"], opened["door"], opened["method"]) == (
        "DOOR_OPEN",
        "Maria, apt 101",
        "garage",
        "pin",
    )
    assert (record.opened_by, record.open_method, record.extra["door"]) == ("Maria, apt 101", "pin", "garage")
    assert_never_quoted(tmp_path, RESIDENT)


async def test_a_pin_outside_its_window_is_refused(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    expired = WindowConfig(valid_until="2000-01-01")
    cleaner = PinConfig("cleaner", hash_pin(CLEANER, SALT), windows=(expired,))
    async with run_keypad(pins_config(tmp_path, prompt_cache, cleaner)) as panel:
        await panel.type(f"#{CLEANER}#")
        await panel.until(lambda: logged(panel, "PIN_REFUSED"), 5, "PIN refused")
        energized = any(s.state for pin in (25, 27) for s in panel.factory.pin(pin).states)
        events = keypad_events(panel.events())
        guard = panel.app.visits.pins.guard
    assert not energized
    assert [(e["event"], e["target"], e["text"]) for e in events] == [("PIN_REFUSED", "cleaner", "outside its window")]
    assert guard.wrong_in_a_row == 0  # the right PIN at the wrong time is not a guess
    assert_never_quoted(tmp_path, CLEANER)


async def test_brute_force_locks_the_keypad_raises_the_alarm_and_a_pin_in_the_lockout_is_not_evaluated(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    resident = PinConfig("resident", hash_pin(RESIDENT, SALT))
    config = pins_config(tmp_path, prompt_cache, resident, wrong_limit=3, alarm_after=3, lockout_seconds=600)
    guesses = ["11111", "22222", "33333"]
    async with run_keypad(config) as panel:
        for guess in guesses:
            await panel.type(f"#{guess}#")
        await panel.until(lambda: logged(panel, "PIN_ALARM"), 10, "alarm raised")
        await panel.type(f"#{RESIDENT}#")  # the right PIN, during the lockout
        await panel.until(lambda: logged(panel, "locked out"), 5, "refused unevaluated")
        energized = any(s.state for pin in (25, 27) for s in panel.factory.pin(pin).states)
        events = keypad_events(panel.events())
    assert not energized
    names = [e["event"] for e in events]
    assert names == ["PIN_REJECTED", "PIN_REJECTED", "PIN_REJECTED", "PIN_LOCKOUT", "PIN_ALARM", "PIN_REFUSED"]
    assert events[-1]["text"] == "locked out: not evaluated" and events[2]["attempts"] == 3
    assert_never_quoted(tmp_path, RESIDENT, *guesses)


async def test_a_restart_does_not_forgive_wrong_pins(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    """Like the apartments' codes: the keypad's PIN lockout, its streak and its count toward the alarm are saved,
    so a crash, the watchdog or a power cut does not hand a brute force a fresh set of tries."""
    resident = PinConfig("resident", hash_pin(RESIDENT, SALT))
    config = pins_config(tmp_path, prompt_cache, resident, wrong_limit=3, lockout_seconds=600)
    async with run_keypad(config) as panel:
        for guess in ("11111", "22222", "33333"):
            await panel.type(f"#{guess}#")
        await panel.until(lambda: logged(panel, "PIN_LOCKOUT"), 10, "keypad locked")
    async with run_keypad(config) as restarted:
        guard = restarted.app.visits.pins.guard
        await restarted.type(f"#{RESIDENT}#")  # the right PIN, after the restart, during the lockout
        await restarted.until(lambda: logged(restarted, "locked out: not evaluated"), 5, "refused unevaluated")
        energized = any(s.state for pin in (25, 27) for s in restarted.factory.pin(pin).states)
    assert not energized
    assert (guard.wrong_since_good, guard.lockouts) == (3, 1)
    assert 590 < guard.locked_until - time.monotonic() <= 600
