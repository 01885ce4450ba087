"""Re-probe of issue 12's door class: ways around the wrong-code lockout that the first fixes left open.

With codes of two lengths (4711 and 902468), a guess at the short code that is never finished with ``#``
was never counted: "0000*", "0001*", ... (or waiting out the digit timeout, or hanging up after each
guess) tried all 10,000 short codes without one wrong code on the record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon.access import PinGuard
from daemon.config import default_config_text, parse_config
from daemon.errors import ConfigError
from daemon.flow.codes import Lockout, Verdict, abandon_typed, enter_digit
from daemon.flow.commands import Log, PulseDoor
from daemon.flow.events import Dtmf, LegAnswered, LegEnded, Start, TimerFired
from daemon.flow.machine import DIGIT_TIMEOUT, VisitState, new_visit, step
from daemon.flow.vocabulary import Timer
from daemon.lockouts import SavedLockouts, load_lockouts, save_lockouts
from tests.reliability._daemon import Intercomd, daemon_config
from tests.reliability._support import apartment
from tests.support.peers import Baresip

CODES = ("4711", "902468")
LIMIT, LOCKOUT_S = 3, 300.0


def _answered() -> VisitState:
    timing = parse_config(default_config_text()).timing
    state, _ = step(new_visit(apartment("A", "sip:a@h", codes=CODES), timing), Start(sip_ready=True))
    state, _ = step(state, LegAnswered(0))
    return state


def _type(state: VisitState, digits: str, at: float) -> tuple[VisitState, list[object]]:
    out: list[object] = []
    for digit in digits:
        state, cmds = step(state, Dtmf(0, digit, "rfc2833", at))
        out += cmds
        at += 0.3
    return state, out


def test_a_short_guess_cleared_with_star_counts_toward_the_lockout() -> None:
    lockout, typed, verdicts = Lockout(), "", []
    for guess in ("0000", "0001", "0002"):
        for digit in guess + "*":
            lockout, typed, verdict = enter_digit(
                lockout, typed, digit, CODES, now=1.0, limit=LIMIT, lockout_seconds=300
            )
        verdicts.append(verdict)
    assert verdicts == [Verdict.REJECTED, Verdict.REJECTED, Verdict.LOCKOUT_STARTED]
    lockout, typed, verdict = enter_digit(lockout, "471", "1", CODES, now=2.0, limit=LIMIT, lockout_seconds=300)
    assert verdict is Verdict.LOCKED  # the right code no longer opens


def test_star_before_a_whole_guess_is_still_a_free_correction() -> None:
    lockout, typed = Lockout(), ""
    for digit in "47*4711":
        lockout, typed, verdict = enter_digit(lockout, typed, digit, CODES, now=1.0, limit=LIMIT, lockout_seconds=300)
    assert verdict is Verdict.ACCEPTED and lockout == Lockout()


def test_abandoned_digits_count_only_as_a_whole_guess() -> None:
    assert abandon_typed(Lockout(), "471", CODES, now=1.0, limit=LIMIT, lockout_seconds=300) == (Lockout(), None)
    assert abandon_typed(Lockout(), "0000", CODES, now=1.0, limit=LIMIT, lockout_seconds=300) == (
        Lockout(wrong_in_a_row=1),
        Verdict.REJECTED,
    )


def test_guesses_left_to_the_digit_timeout_lock_out() -> None:
    state, at = _answered(), 10.0
    for guess in ("0000", "0001", "0002"):
        state, _ = _type(state, guess, at)
        at += 2.0
        state, fired = step(state, TimerFired(Timer.DIGITS))
        assert Log("CODE_REJECTED", "sip:a@h", "unfinished code") in fired
        at += DIGIT_TIMEOUT
    assert state.lockout.locked(at)
    state, out = _type(state, "4711", at)
    assert not any(isinstance(c, PulseDoor) for c in out)


def test_a_guess_cut_off_by_hanging_up_counts_and_the_router_keeps_it() -> None:
    state = _answered()
    state, _ = _type(state, "0000", 10.0)
    state, out = step(state, LegEnded(0, 200))
    assert state.lockout == Lockout(wrong_in_a_row=1)  # the router carries this lockout to the next visit
    assert Log("CODE_REJECTED", "sip:a@h", "unfinished code") in out


def test_an_apartment_cannot_take_the_inbound_callers_name() -> None:
    # Before: accepted. The router files allowlisted callers' visits under "inbound": one shared lockout (an
    # inbound caller's right code reset the apartment's wrong-code count) and one name in history.
    text = default_config_text().replace('name = "Portaria"', 'name = "Inbound"')
    with pytest.raises(ConfigError, match=r"apartments\[1\]: name: 'Inbound' is reserved for calls from sip"):
        parse_config(text)


def test_a_phone_sending_each_key_both_ways_opens_with_its_code_once() -> None:
    # Before: RFC 2833 and SIP INFO for each key read as "44771111": the right code was a wrong one, and three
    # of them locked the apartment out.
    state, at, out = _answered(), 10.0, []
    for digit in "4711":
        for method in ("rfc2833", "info"):
            state, cmds = step(state, Dtmf(0, digit, method, at))
            out += cmds
            at += 0.05
        at += 0.3
    assert PulseDoor() in out and state.lockout == Lockout()
    # The last key's echo comes after the code was accepted, and is ignored as such.
    assert out.count(Log("DTMF_IGNORED", "sip:a@h", "info: the same key again by the other method")) == 3


def test_the_same_key_twice_by_one_method_is_two_presses() -> None:
    state = _answered()
    state, _ = step(state, Dtmf(0, "4", "rfc2833", 10.0))
    state, _ = step(state, Dtmf(0, "4", "rfc2833", 10.1))  # "44...": a second press, however quick
    assert state.typed == "44"


def _type_on(phone: Baresip, digits: str) -> None:
    for digit in digits:
        phone.command("sndcode", digit)
        time.sleep(0.3)  # closer than ~250 ms, pjsua queues them


def _visit(daemon: Intercomd, phone: Baresip, digits: str, visits_before: int) -> None:
    assert daemon.ctl("press", "101").returncode == 0
    phone.wait_event_sync("CALL_ESTABLISHED", 10)
    time.sleep(0.3)  # pjsua needs the media up before it hears RFC 2833 digits
    _type_on(phone, digits)
    time.sleep(0.5)
    phone.hangup()
    deadline = time.monotonic() + 15
    while json.loads(daemon.ctl("status", "--json").stdout)["visits"]["completed"] <= visits_before:
        assert time.monotonic() < deadline, "the visit did not end"
        time.sleep(0.1)


@pytest.mark.peers
def test_a_restart_does_not_forgive_wrong_codes(tmp_path: Path, prompt_cache: Path) -> None:
    # Before: lockouts lived in memory only; a restart (crash, watchdog, power cut) lifted a lockout in force
    # and gave back every try: the right code opened just after the lockout.
    with Baresip(tmp_path, user="a") as phone:
        config = daemon_config(tmp_path, prompt_cache, edits={'"sip:101@127.0.0.1:5080"': f'"{phone.uri}"'})
        with Intercomd(config) as daemon:
            _visit(daemon, phone, "000000010002", 0)  # three wrong codes: locked out for 300 s
        with Intercomd(config) as restarted:
            _visit(restarted, phone, "4711", 0)
            (latest, _) = json.loads(restarted.ctl("history", "--json").stdout)
            events = [json.loads(line) for line in (tmp_path / "state" / "events.jsonl").read_text().splitlines()]
    assert latest["door_opened"] is False, latest
    rejected = [e["text"] for e in events if e["event"] == "CODE_REJECTED"]
    assert rejected == ["wrong code"] * 3 + ["codes locked out"] * 4, rejected


def test_saved_lockouts_survive_a_reload_of_the_file_and_a_damaged_file_is_no_crash(tmp_path: Path) -> None:
    path = tmp_path / "lockouts.json"
    now = time.monotonic()
    pins = PinGuard(wrong_in_a_row=0, wrong_since_good=7, lockouts=2, locked_until=now + 1200)
    save_lockouts(path, SavedLockouts({"A": Lockout(0, now + 300), "B": Lockout(2), "C": Lockout()}, pins))
    loaded = load_lockouts(path)
    assert set(loaded.apartments) == {"A", "B"} and loaded.apartments["B"] == Lockout(2)  # C had nothing to keep
    assert 299 < loaded.apartments["A"].locked_until - time.monotonic() <= 300
    assert (loaded.pins.wrong_since_good, loaded.pins.lockouts) == (7, 2)  # the next lockout still doubles
    assert 1199 < loaded.pins.locked_until - time.monotonic() <= 1200
    for damaged in ("", "[1]", '{"A": {"wrong": "x"}}', '{"A": {"wrong": 1, "until": NaN}}', "\x00\xff"):
        path.write_text(damaged, encoding="latin-1")
        assert load_lockouts(path) == SavedLockouts()
    path.write_text('{"apartments": {}, "keypad_pins": {"wrong": -1, "since_good": 0, "lockouts": 0, "until": 0}}')
    assert load_lockouts(path) == SavedLockouts()
    path.write_text('{"A": {"wrong": 2, "until": 0}}')  # the first format: the apartments' map alone
    assert load_lockouts(path) == SavedLockouts({"A": Lockout(2)})
