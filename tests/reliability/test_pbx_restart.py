"""The PBX (kamailio) restarted in the middle of a call: what the visit, the door and the next visit do.

Kamailio is a proxy here, not a media relay: it record-routes the INVITE, so in-dialog requests (the BYE) go
through it, but RTP, and so RFC 2833 DTMF, flows straight between the panel and the phone. A restart loses its
in-memory bindings, not the dialog: the route set lives in the two ends' headers, and the new process
loose-routes the BYE as the old one would have. So the call survives: the resident opens the door while the
PBX is down, the panel's BYE reaches the phone through the restarted PBX, and both ends register again at
their next refresh (kamailio grants 6 s here), after which the next visit rings and opens.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.reliability._support import apartment, capture_logs, config_with, played, with_registrar
from tests.reliability.test_faults import open_with_code
from tests.scenario.conftest import run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip, Kamailio, sip_options

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

HANGUP_AFTER_OPEN = 4.0  # seconds: the PBX is back before the panel hangs up


async def _until_reachable(kamailio: Kamailio, user: str, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while await anyio.to_thread.run_sync(sip_options, kamailio.port, 0.3, user) != 200:
            await anyio.sleep(0.2)


def _registers_since(kamailio: Kamailio, offset: int, user: str) -> bool:
    """Has ``user`` sent a REGISTER to kamailio since its log was ``offset`` characters long?"""
    return f"REGISTER challenge/deny for {user}" in kamailio.log_text()[offset:]


async def test_pbx_restarted_mid_call_the_call_survives_and_the_next_visit_opens(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    kamailio = Kamailio(tmp_path, users={"panel": "s3cret", "101": "r3sident"}, max_expires=6).start()
    base = config_with(
        tmp_path, prompt_cache, [apartment("101", kamailio.uri("101"))], hangup_after_open_seconds=HANGUP_AFTER_OPEN
    )
    config = with_registrar(base, kamailio.registrar)
    try:
        with Baresip(tmp_path, user="101", registrar=kamailio) as phone, capture_logs() as logs:
            async with run_panel(config) as panel:
                await panel.until(lambda: panel.app.registered, 10, "registered")
                await panel.press()
                await phone.wait_event("CALL_ESTABLISHED", 10)

                kamailio.stop()  # the PBX goes away during the talk
                # The code typed now still opens: RFC 2833 digits travel in the call's RTP, panel <-> phone.
                await open_with_code(panel, phone, established=True)
                log_before_restart = len(kamailio.log_text())
                kamailio.start()  # same port, no bindings: a restarted database-less PBX
                # The panel hangs up HANGUP_AFTER_OPEN s after the door opened: its BYE follows the route set
                # through the new kamailio process and reaches the phone.
                await phone.wait_event("CALL_CLOSED", HANGUP_AFTER_OPEN + 10)
                await panel.visit_done()
                assert not panel.relay_energized  # the pulse ended; nothing holds the door open

                # Both ends register again with the new process at their next refresh (6 s registrations): the
                # new process's nonce secret is new, so each end's first REGISTER to it is challenged (and logged).
                await panel.until(lambda: _registers_since(kamailio, log_before_restart, "panel"), 15, "panel")
                # The phone is known to the new process once an OPTIONS for its AOR, relayed by kamailio, reaches it.
                await _until_reachable(kamailio, "101", 15)
                assert panel.app.registered
                await anyio.sleep(1.2)  # the button hold-off since the first press
                await panel.press()
                await open_with_code(panel, phone)
                await panel.visit_done(2)
                outcomes = [r.outcome for r in await panel.app.visit_history.recent(5)]
                heard = played(panel)
    finally:
        kamailio.stop()
    assert outcomes == ["door_opened", "door_opened"]
    assert heard.count("door_open") == 2
    assert not logs.matching("registration down", "ERROR")  # the restart never put the panel out of service
