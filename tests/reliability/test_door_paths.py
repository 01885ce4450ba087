"""The door opens ONLY through: the called resident's code on an answered outbound call, an allowlisted
inbound caller's ``inbound_codes``, the exit button, or the control socket's ``open``. Each path is tested
working, and each way around it is tested refused.

Not repeated here: wrong codes locking out within one call (tests/scenario/test_visits.py), control
socket parsing against a fake handler (tests/control), a world-readable password file warned about
(tests/config/test_config.py), callers not on the allowlist refused at the engine (tests/sip/test_inbound.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from daemon.config import default_config_text, parse_config
from daemon.facade import OpenResult
from daemon.flow.codes import Lockout, Verdict, enter_digit
from daemon.flow.commands import Log, PulseDoor
from daemon.flow.events import Dtmf, LegAnswered, Start
from daemon.flow.machine import Phase, new_visit, step
from tests.reliability._support import apartment, config_with
from tests.scenario.conftest import Panel, run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip

pytestmark = [pytest.mark.anyio]


async def send_digits(phone: Baresip, digits: str) -> None:
    for digit in digits:
        phone.command("sndcode", digit)
        await anyio.sleep(0.3)  # closer than ~250 ms, pjsua queues them


def relay_ever_energized(panel: Panel) -> bool:
    return any(s.state for s in panel.factory.pin(panel.app.config.relay.pin).states)


@pytest.mark.peers
async def test_another_apartments_code_does_not_open(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    with Baresip(tmp_path, user="a") as a:
        apts = [
            apartment("A", a.uri, codes=("11",), buttons=("101",)),
            apartment("B", "sip:b@127.0.0.1:9", codes=("22",), buttons=("concierge",)),
        ]
        config = config_with(tmp_path, prompt_cache, apts, inbound_codes=("33",))
        async with run_panel(config) as panel:
            await panel.press()
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "22")  # apartment B's code
            await send_digits(a, "33")  # the inbound callers' code
            await anyio.sleep(0.3)
            assert not relay_ever_energized(panel)
            await send_digits(a, "11")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
            names = panel.names()
    assert names.count("CODE_REJECTED") == 2 and names.count("DOOR_OPEN") == 1


@pytest.mark.peers
async def test_brute_force_locks_out_and_the_lockout_holds_across_visits(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="a") as a:
        config = config_with(
            tmp_path, prompt_cache, [apartment("A", a.uri, codes=("5",))], wrong_code_limit=3, lockout_seconds=300
        )
        async with run_panel(config) as panel:
            await panel.press()
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "0123")  # a brute force, one-digit codes: locks out after the third
            a.hangup()
            await panel.visit_done()
            await anyio.sleep(1.1)  # the button hold-off
            await panel.press()  # a new visit, a new call: the lockout is per apartment, not per call
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "5")  # the right code
            await anyio.sleep(0.5)
            a.hangup()
            await panel.visit_done(2)
            events = panel.events()
            opened = relay_ever_energized(panel)
    rejected = [e["text"] for e in events if e["event"] == "CODE_REJECTED"]
    assert not opened
    assert [e["event"] for e in events].count("LOCKOUT") == 1
    assert rejected == ["wrong code"] * 3 + ["codes locked out"] * 2, rejected


@pytest.mark.peers
async def test_tamper_blocks_the_relay_and_the_right_code_is_a_refused_open(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="a") as a:
        config = config_with(tmp_path, prompt_cache, [apartment("A", a.uri, codes=("5",))])
        assert config.tamper is not None
        tamper = replace(config.tamper, block_seconds=300)
        config = replace(config, tamper=tamper)
        async with run_panel(config) as panel:
            panel.factory.pin(tamper.pin).drive_low()  # the cover is opened: the relay is blocked
            await panel.until(lambda: bool(panel.app.status()["relay"]["blocked"]), 5, "relay blocked")  # type: ignore[index]
            await panel.press()
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "5")  # the right code
            await panel.visit_done()
            by_hand = panel.app.open_door(by="test")  # the control socket's `open`, through the facade
            await panel.app.visit_log.flush()
            events = panel.events()
            (record,) = await panel.app.visit_history.recent(5)
            opened = relay_ever_energized(panel)
    names = [e["event"] for e in events]
    heard = [e["text"] for e in events if e["event"] == "PLAYBACK_START"]
    assert not opened
    assert by_hand == OpenResult(False, "relay blocked by tamper")
    assert "DOOR_OPEN" not in names and names.count("DOOR_OPEN_REFUSED") == 2, names
    assert "door_open" not in heard and "door_not_opened" in heard, heard  # never "porta aberta"
    assert (record.outcome, record.door_opened) == ("door_refused", False)
    assert record.failure == "relay blocked by tamper"
    (outcome,) = [e for e in events if e["event"] == "OUTCOME"]
    assert outcome["text"] == "door_refused"


@pytest.mark.peers
async def test_digits_typed_on_one_call_never_join_the_next_call(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    # Code 4711. Before the fix: "47" typed on a call, then "11" on the next visit's call, opened the door.
    with Baresip(tmp_path, user="a") as a:
        apt = apartment("A", a.uri, codes=("4711",), buttons=("101", "concierge"))
        config = config_with(tmp_path, prompt_cache, [apt])
        async with run_panel(config) as panel:
            await panel.press()
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "47")
            a.hangup()
            await panel.visit_done()
            await panel.press(18)  # the apartment's other button: no wait for the first one's hold-off
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "11")
            await anyio.sleep(0.3)
            leaked = relay_ever_energized(panel)
            await send_digits(a, "*4711")  # the whole code on this call opens
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done(2)
            names = panel.names()
    assert not leaked
    assert names.count("DOOR_OPEN") == 1 and "CODE_REJECTED" not in names


def test_brute_force_rate_at_the_codes_layer() -> None:
    # An attacker entering digits as fast as DTMF allows, for a simulated day, defaults (3 tries / 300 s).
    lockout, typed, now, tried, accepted, attempt = Lockout(), "", 0.0, 0, False, 0
    while now < 86_400:
        for digit in f"{attempt:04d}":
            lockout, typed, verdict = enter_digit(
                lockout, typed, digit, ("4711",), now=now, limit=3, lockout_seconds=300
            )
            now += 0.25
            tried += verdict in (Verdict.REJECTED, Verdict.LOCKOUT_STARTED)
            accepted = accepted or verdict is Verdict.ACCEPTED
        attempt += 1
    # 3 codes per 5 minutes + 1 s of digits each: ~860 a day, 8.6 % of a 4-digit space.
    assert 800 < tried < 900 and not accepted


def test_digits_before_answer_or_from_a_losing_leg_are_ignored() -> None:
    base = parse_config(default_config_text())
    apt = apartment("A", "sip:a@h", "sip:b@h", codes=("1",))
    state, _ = step(new_visit(apt, base.timing), Start(sip_ready=True))
    state, out = step(state, Dtmf(0, "1", "rfc2833", 1.0))  # ringing, not answered yet
    assert state.phase is Phase.RINGING and not state.door_opened
    assert out == [Log("DTMF_IGNORED", "sip:a@h", "rfc2833: not from the answered call")]
    state, _ = step(state, LegAnswered(0))
    state, out = step(state, Dtmf(1, "1", "rfc2833", 2.0))  # the leg that did not answer
    assert not state.door_opened
    state, out = step(state, Dtmf(0, "1", "rfc2833", 3.0))
    assert state.phase is Phase.OPENING and out[-1] == PulseDoor()  # the relay's answer decides the rest


@pytest.mark.peers
async def test_inbound_only_allowlisted_callers_with_inbound_codes(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with (
        Baresip(tmp_path, user="concierge") as concierge,
        Baresip(tmp_path, user="mallory") as mallory,
        Baresip(tmp_path, user="concierge", listen_host="127.0.0.2") as forger,
    ):
        config = config_with(
            tmp_path, prompt_cache, [apartment("101", "sip:101@127.0.0.1:9", codes=("1",))], inbound_codes=("9",)
        )
        config = replace(
            config, sip=replace(config.sip, inbound_allow=("sip:concierge@127.0.0.1",), inbound_sources=("127.0.0.1",))
        )
        async with run_panel(config) as panel:
            target = f"sip:portao@127.0.0.1:{panel.app.sip.sip_port}"
            mallory.command("dial", target)  # not on the allowlist: refused (603), her digits go nowhere
            await mallory.wait_event("CALL_CLOSED", 10)
            await send_digits(mallory, "9")
            # From: sip:concierge@127.0.0.1 but sent from 127.0.0.2, not an inbound source: refused too.
            forger.command("dial", target)
            closed = await forger.wait_event("CALL_CLOSED", 10)
            assert "603" in json.dumps(closed), closed
            await send_digits(forger, "9")
            concierge.command("dial", target)
            await concierge.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(concierge, "1")  # an apartment's code is not an inbound code
            await anyio.sleep(0.3)
            assert not relay_ever_energized(panel)
            await send_digits(concierge, "9")
            await panel.until(lambda: panel.relay_energized, 5, "relay energized")
            await panel.visit_done()
            (record,) = await panel.app.visit_history.recent(5)
    assert record.outcome == "door_opened" and record.extra == {"inbound": True}


def control(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw request lines to the control socket (blocking; run it in a worker thread)."""
    replies: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        reader = s.makefile("rb")
        for line in lines:
            # The server may hang up on a line over its limit: then read what it said before that.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(line + b"\n")
            try:
                reply = reader.readline()
            except ConnectionResetError:
                break
            if not reply:
                break
            replies.append(json.loads(reply))
    return replies


@pytest.mark.peers
async def test_exit_button_and_control_open_and_a_control_dial_cannot(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="a") as a:
        config = config_with(
            tmp_path, prompt_cache, [apartment("101", "sip:101@127.0.0.1:9")], relay={"pulse_seconds": 0.3}
        )
        async with run_panel(config) as panel:
            sock = Path(config.paths.runtime_dir) / "control.sock"
            # A call placed from the control socket belongs to no visit: its digits open nothing.
            (dialed,) = await anyio.to_thread.run_sync(
                control, sock, json.dumps({"cmd": "dial", "uri": a.uri}).encode()
            )
            await a.wait_event("CALL_ESTABLISHED", 10)
            await anyio.sleep(0.3)
            await send_digits(a, "1")
            await anyio.sleep(0.3)
            a.hangup()
            assert not relay_ever_energized(panel)
            # Malformed, huge and unknown requests against the real app: refused, the server goes on.
            bad = [
                b"{not json",
                b"\xff\xfe",
                b"[1,2]",
                b'{"cmd": "opne"}',
                b'{"cmd": "open", "force": true}',
                b'{"cmd": "press", "button": 101}',
                b"{" + b" " * 2_000_000,
            ]
            replies = await anyio.to_thread.run_sync(control, sock, *bad[:-1])
            huge = await anyio.to_thread.run_sync(control, sock, bad[-1])
            assert not relay_ever_energized(panel)
            # The two real paths.
            (opened,) = await anyio.to_thread.run_sync(control, sock, b'{"cmd": "open"}')
            await panel.until(lambda: panel.relay_energized, 2, "relay energized by control")
            await panel.until(lambda: not panel.relay_energized, 2, "relay released")
            exit_pin = panel.factory.pin(22)
            exit_pin.drive_low()
            await panel.until(lambda: panel.relay_energized, 2, "relay energized by the exit button")
            exit_pin.drive_high()
            await panel.until(lambda: not panel.relay_energized, 2, "relay released")
    assert dialed["ok"], dialed
    assert [r["ok"] for r in replies] == [False] * 6, replies
    assert {r["error"]["code"] for r in replies} == {"bad_request", "unknown_command"}
    assert len(huge) <= 1 and all(not r["ok"] for r in huge)
    assert opened["ok"], opened
