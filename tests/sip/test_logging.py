"""What the SIP layer writes to the log: never a received digit (digits spell door codes), and pjsip's own
lines through Python ``logging`` only, first lines only, within a budget an attacker cannot blow."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.sip import CallEnded, CallHandle, DtmfReceived, MediaActive, SipEngine
from daemon.sip._pj_log import native_output_to_debug
from daemon.sip._pjsip_log import BUDGET, PjsipLogRouter, clean_line, python_level
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Baresip, Sipp


def leaks(text: str, digit: str) -> bool:
    """Does ``text`` show ``digit`` as a received digit would be shown (quoted, or after DTMF/Signal/digit)?"""
    d = re.escape(digit)
    return bool(
        re.search(rf"['\"]{d}['\"]", text) or re.search(rf"(DTMF|digits?|Signal)\W{{0,12}}{d}(?!\d)", text, re.I)
    )


def test_a_dtmf_event_does_not_show_its_digit() -> None:
    event = DtmfReceived(CallHandle(1, 0, "outgoing", "sip:r@127.0.0.1"), "4", "rfc2833")
    assert event.digit == "4" and not leaks(repr(event), "4") and "digit" not in repr(event)


def test_clean_line_keeps_the_first_line_and_redacts() -> None:
    dump = (
        "sip_endpoint.c Error processing packet from 1.2.3.4:5060: Missing Call-ID [code 171141]:\n"
        "INFO sip:panel SIP/2.0\nAuthorization: Digest response=abc\n\nSignal=4\n-- end of packet."
    )
    assert (
        clean_line(dump) == "sip_endpoint.c Error processing packet from 1.2.3.4:5060: Missing Call-ID [code 171141]:"
    )
    assert clean_line("Authorization: Digest username=x, response=secret") == "Authorization: <redacted>"
    assert clean_line("Signal=4 Duration=160") == "Signal=* Duration=160"
    assert clean_line("Call 0 dialing DTMF 4711") == "Call * dialing DTMF *"
    assert clean_line("stream.c Received DTMF digit 4, vol=10") == "stream.c Received DTMF digit *, vol=10"
    assert clean_line("Sending DTMF digit id #") == "Sending DTMF digit id *"
    assert clean_line("Call 1: digits D via 127.0.0.1:5060") == "Call *: digits * via 127.0.0.1:5060"
    assert len(clean_line("x" * 5000)) < 300
    assert [python_level(n) for n in (0, 1, 2, 3, 5)] == [40, 40, 30, 10, 10]


def test_router_passes_a_budget_per_window_then_says_how_many_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.pjsip")
    router = PjsipLogRouter(logging.getLogger("test.pjsip"), budget=3, window=10.0)
    for i in range(50):
        router.route(1, f"bad packet {i}\n<the packet>", now=100.0 + i * 0.01)
    assert [r.getMessage() for r in caplog.records] == [f"pjsip: bad packet {i}" for i in range(3)]
    router.flush(now=105.0)  # the window is not over: nothing yet
    assert len(caplog.records) == 3
    router.flush(now=110.5)
    assert (
        caplog.records[-1].levelno == logging.WARNING and "47 more pjsip log lines" in caplog.records[-1].getMessage()
    )
    router.route(2, "next window", now=111.0)
    assert caplog.records[-1].getMessage() == "pjsip: next window" and router.suppressed_total == 47


def test_native_start_up_noise_is_logged_and_other_output_passes(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """pjlib's pre-writer lines and libjack's probe (a source build listing ALSA devices in libInit) went
    to stdout/stderr at every start; anything else printed meanwhile must still reach its stream."""
    caplog.set_level(logging.DEBUG, logger="daemon.sip.pjsip")
    with native_output_to_debug():
        os.write(1, b"10:36:34.574         os_core_unix.c !pjlib 2.15.1 for POSIX initialized\n")
        os.write(2, b"Cannot connect to server socket err = No such file or directory\n")
        os.write(2, b"jack server is not running or cannot be started\n")
        os.write(2, b"JackShmReadWritePtr::~JackShmReadWritePtr - Init not done for -1, skipping unlock\n")
        os.write(2, b"another thread's own line\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "another thread's own line\n"
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(logged) == 4 and "pjsip: jack server is not running or cannot be started" in logged


async def test_a_flood_of_malformed_datagrams_logs_a_bounded_number_of_lines(
    bridge: LoopBridge, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Each malformed packet made pjsip print an error line with the whole packet (at start-up too its
    console lines reached stdout): 600 of them now give at most BUDGET one-line records, nothing on fd 1/2."""
    caplog.set_level(logging.DEBUG)
    kinds = [
        b"garbage \x00\xff\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\nSignal=4\r\n\r\n",
        # parses, but misses Call-ID and CSeq: "Error processing packet ... :\n<packet>" at level 1
        b"INFO sip:panel@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nAuthorization: Digest response=secret\r\n"
        b"Content-Length: 8\r\n\r\nSignal=4",
    ]
    async with SipEngine(make_config(), bridge) as engine:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for i in range(600):
                attacker.sendto(kinds[i % len(kinds)], ("127.0.0.1", engine.sip_port))
        await anyio.sleep(0.5)  # the owner reads them all (its own poll)
        await engine.ping()
    pjsip = [r for r in caplog.records if r.name == "daemon.sip.pjsip" and r.levelno >= logging.WARNING]
    assert 0 < len(pjsip) <= BUDGET + 1, [r.getMessage() for r in pjsip]
    assert all("\n" not in r.getMessage() and "secret" not in r.getMessage() for r in caplog.records)
    assert not any(leaks(r.getMessage(), "4") for r in caplog.records)
    out, err = capfd.readouterr()
    printed = out + err
    assert not [word for word in ("pjsip", "sip_endpoint.c", "os_core", "jack", "ALSA lib") if word in printed]


@pytest.mark.peers
async def test_received_digits_never_reach_the_log(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A resident types digits (RFC 2833 from baresip, SIP INFO from sipp): the engine reports them as
    events, and nothing logged at any level shows one (the engine logged ``DTMF '4' via rfc2833`` at INFO)."""
    caplog.set_level(logging.DEBUG)
    with Baresip(tmp_path) as phone, Sipp(tmp_path, "uas_info_dtmf", digit="9") as far:
        async with SipEngine(make_config(), bridge) as engine:
            log = EventLog(engine)
            call = await engine.dial(phone.uri, ring_timeout=10)
            await log.wait(MediaActive, call)
            await phone.wait_event("CALL_ESTABLISHED", 5)
            await anyio.sleep(0.2)
            phone.command("sndcode", "7")
            assert (await log.wait(DtmfReceived, call)).digit == "7"
            info_call = await engine.dial(far.uri(), ring_timeout=10)
            assert (await log.wait(DtmfReceived, info_call)).digit == "9"
            for c in (call, info_call):
                await engine.hangup(c)
                await log.wait(CallEnded, c)
    messages = [r.getMessage() for r in caplog.records]
    assert any("DTMF via rfc2833" in m for m in messages) and any("DTMF via info" in m for m in messages)
    assert not [m for m in messages if leaks(m, "7") or leaks(m, "9")]
