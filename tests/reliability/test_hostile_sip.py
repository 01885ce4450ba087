"""Malformed and hostile SIP sent to the daemon's own UDP port with a raw socket (RFC 4475 torture
classes), then INVITE floods from sources not on the allowlist: 100 INVITEs 20 ms apart, and bursts 2 ms
apart from another process while a visitor rings. Refused all at once, 60 INVITEs 2 ms apart aborted the
process (PJSUA2-FACTS.md); the owner thread now paces refusals (daemon/sip/_teardown_pace.py). After
each: no door opened, no call left up, and a legitimate visit still works (baresip answers, the code opens).

Engine-level cases not repeated: 20 INVITEs without SDP (tests/sip/test_inbound.py), 200 calls with racing
hang-ups (tests/sip/test_stress.py).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import anyio
import pytest

from tests.reliability._support import apartment, config_with
from tests.scenario.conftest import Panel, run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip
from tests.support.sip_flood import SDP, request, run_flood

pytestmark = [pytest.mark.anyio, pytest.mark.peers]


def torture_messages(port: int, lport: int) -> dict[str, list[bytes]]:
    """Messages by RFC 4475 class. None of them may open the door or crash the daemon."""
    uri = f"sip:portao@127.0.0.1:{port}"
    n = iter(range(1, 10_000))
    rng = random.Random(4475)
    out: dict[str, list[bytes]] = {
        "bad start line": [
            b"INVITE\r\n\r\n",
            b"INVITE sip:x SIP/7.0\r\n\r\n",
            b"SIP/2.0 OK\r\n\r\n",
            b"  \r\n\tINVITE  \r\n",
            request("INVITE", uri, port, lport, next(n)).replace(b" SIP/2.0\r\n", b" SIP/2.0 extra\r\n", 1),
            request("invite", uri, port, lport, next(n)),
            b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            request("INVITE", uri, port, lport, next(n)).replace(b"INVITE ", b"INVITE\t\t", 1),
        ],
        "huge headers": [
            request("OPTIONS", uri, port, lport, next(n), extra=f"Subject: {'A' * 60_000}\r\n"),
            request("INVITE", uri, port, lport, next(n), body=SDP, extra="Via: SIP/2.0/UDP 1.2.3.4\r\n" * 1500),
            request("OPTIONS", uri, port, lport, next(n), extra=f"X-{'h' * 8000}: 1\r\n"),
            request("INVITE", uri, port, lport, next(n), body=SDP, extra=f"To: <sip:{'x' * 4000}@h>\r\n"),
        ],
        "wrong Content-Length": [
            request("INVITE", uri, port, lport, next(n), body=SDP, content_length="9999"),
            request("INVITE", uri, port, lport, next(n), body=SDP, content_length="-5"),
            request("INVITE", uri, port, lport, next(n), body=SDP, content_length="12"),
            request("INVITE", uri, port, lport, next(n), body=SDP, content_length="ten"),
            request("OPTIONS", uri, port, lport, next(n), content_length="99999999999999999999"),
        ],
        "unknown methods": [
            request(m, uri, port, lport, next(n))
            for m in ("BREW", "NOTAMETHOD", "OPEN", "X" * 300, "REGISTER", "SUBSCRIBE", "PUBLISH")
        ],
        "invalid URIs": [
            request("INVITE", target, port, lport, next(n), body=SDP)
            for target in (
                "sip:@@@",
                "<sip:portao@127.0.0.1>",
                "http://127.0.0.1/",
                "sip:portao@[::1",
                "sip:portao@127.0.0.1:99999",
                "sip:%00%ff@127.0.0.1",
                "tel:+1-555",
                "sip:" + "a" * 3000,
            )
        ],
        "garbage bytes": [
            b"",
            b"\r\n",
            b"\x00" * 64,
            b"\xff\xfe\xfd" * 100,
            rng.randbytes(1400),
            rng.randbytes(8000),
            "INVITE sip:é@ñ SIP/2.0\r\n\r\n".encode("latin-1"),
        ],
        "missing headers": [
            request("INVITE", uri, port, lport, next(n), body=SDP, omit=(h,))
            for h in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards")
        ],
        "no-SDP INVITE": [request("INVITE", uri, port, lport, next(n)) for _ in range(5)],
        "Max-Forwards 0": [
            request("INVITE", uri, port, lport, next(n), body=SDP, max_forwards="0"),
            request("OPTIONS", uri, port, lport, next(n), max_forwards="0"),
        ],
        "bad SDP": [
            request("INVITE", uri, port, lport, next(n), body="v=0\r\nm=audio x RTP/AVP\r\n"),
            request("INVITE", uri, port, lport, next(n), body="v=0\r\n" + "a=x\r\n" * 500),
            request("INVITE", uri, port, lport, next(n), body=SDP.replace("29000", "0")),
        ],
        "out-of-dialog DTMF and teardown": [
            request("INFO", uri, port, lport, next(n), body="Signal=1\r\nDuration=160\r\n"),
            request("BYE", uri, port, lport, next(n)),
            request("CANCEL", uri, port, lport, next(n)),
            request("ACK", uri, port, lport, next(n)),
            request("INVITE", uri, port, lport, next(n), body=SDP, caller='concierge"<sip:x@y>'),
        ],
    }
    return out


def relay_ever_energized(panel: Panel) -> bool:
    return any(s.state for s in panel.factory.pin(panel.app.config.relay.pin).states)


async def drain(sock: socket.socket, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    with anyio.move_on_after(seconds):
        while True:
            try:
                got.append(sock.recv(65536))
            except BlockingIOError:
                await anyio.sleep(0.01)
    return got


async def legitimate_visit(panel: Panel, phone: Baresip, count: int) -> None:
    await anyio.sleep(1.1)  # the button hold-off
    await panel.press()
    await phone.wait_event("CALL_ESTABLISHED", 10)
    await anyio.sleep(0.3)
    phone.command("sndcode", "1")
    await panel.until(lambda: panel.relay_energized, 5, "relay energized by the resident's code")
    await panel.visit_done(count)


async def test_torture_messages_then_a_flood_then_a_legitimate_visit(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    with Baresip(tmp_path, user="101") as phone, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        lport = sock.getsockname()[1]
        config = config_with(tmp_path, prompt_cache, [apartment("101", phone.uri)], relay={"pulse_seconds": 0.3})
        async with run_panel(config) as panel:
            target = ("127.0.0.1", panel.app.sip.sip_port)
            classes = torture_messages(target[1], lport)
            sent = 0
            for messages in classes.values():
                for message in messages:
                    sock.sendto(message[:65_000], target)
                    sent += 1
                    await anyio.sleep(0.02)
            answered = await drain(sock, 1.0)
            assert not relay_ever_energized(panel)
            await panel.until(lambda: panel.app.visits.current is None, 5, "no visit")
            await legitimate_visit(panel, phone, 1)

            # The flood: 100 INVITEs with SDP from a caller not on the allowlist, 20 ms apart.
            for i in range(100):
                sock.sendto(
                    request(
                        "INVITE",
                        f"sip:portao@127.0.0.1:{target[1]}",
                        target[1],
                        lport,
                        50_000 + i,
                        body=SDP,
                        caller=f"flood{i}",
                    ),
                    target,
                )
                await anyio.sleep(0.02)
            replies = await drain(sock, 3.0)
            # 50/s is above the refusal pace (daemon/sip/_teardown_pace.py): some are refused by us (603),
            # the rest by pjsua while every call slot is taken (486), never with a media transport.
            refused = {
                r.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0]
                for r in replies
                if r.startswith((b"SIP/2.0 603", b"SIP/2.0 486")) and b"Call-ID: " in r
            }
            opened_by_flood = panel.app.visits.completed != 1
            await legitimate_visit(panel, phone, 2)
            live = await panel.app.sip.live_calls()
            faults = panel.app.sip.fault_counters
            names = panel.names()
    counts = {name: len(messages) for name, messages in classes.items()}
    print(f"\ntorture messages sent: {sent} {counts}")
    assert sent == sum(counts.values()) >= 60
    flood_refused = {cid for cid in refused if int(cid.split(b"-")[1].split(b"@")[0]) >= 50_000}
    print(f"torture replies received: {len(answered)}; flood refused: {len(flood_refused)}")
    assert len(flood_refused) == 100 and not opened_by_flood
    assert names.count("DOOR_OPEN") == 2  # exactly the two legitimate visits
    assert live == [] and faults == (0, 0)


async def test_a_visit_during_an_invite_burst(tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture) -> None:
    """1,500 INVITEs 2 ms apart (500/s, 3 s) from another process; a visitor rings in the middle of it."""
    with Baresip(tmp_path, user="101") as phone:
        config = config_with(tmp_path, prompt_cache, [apartment("101", phone.uri)], relay={"pulse_seconds": 0.3})
        async with run_panel(config) as panel, anyio.create_task_group() as tg:
            port = panel.app.sip.sip_port
            results: list[dict[str, object]] = []

            async def burst() -> None:
                results.append(await run_flood(port, 1500, 2))

            tg.start_soon(burst)
            await anyio.sleep(0.5)  # the flood is on: every call slot is held by callers waiting to be refused
            await legitimate_visit(panel, phone, 1)
            with anyio.fail_after(30):
                while not results:
                    await anyio.sleep(0.1)
            await legitimate_visit(panel, phone, 2)  # and after it
            live = await panel.app.sip.live_calls()
            faults = panel.app.sip.fault_counters
            names = panel.names()
    result = results[0]
    print(f"\nburst during a visit: {result}")
    final = result["final"]
    assert isinstance(final, dict) and result["unanswered"] == 0
    assert set(final) <= {"SIP/2.0 603 Decline", "SIP/2.0 486 Busy Here"}  # refused by us or by pjsua
    assert sum(final.values()) == 1500
    assert names.count("DOOR_OPEN") == 2 and live == [] and faults == (0, 0)
