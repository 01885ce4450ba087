"""Secrets never reach the logs, the event log or the history: the SIP password (given the systemd way,
INTERCOM_SIP_PASSWORD) and the door codes (right and wrong ones typed by a resident). A world-readable
config holding a password is warned about: tests/config/test_config.py."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from daemon.config import load_config
from tests.reliability._support import apartment, capture_logs, config_with
from tests.scenario.conftest import run_panel
from tests.support.alsa import AlsaCapture
from tests.support.peers import Baresip, Kamailio

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

PASSWORD = "Pw-xyzzy-8c1e"
CODE = "73019"  # a 5-digit token no port (<= 65535) can be
WRONG = "86420"


async def test_password_and_codes_never_logged_or_stored(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture, capfd: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "intercom.toml"
    with Kamailio(tmp_path, users={"panel": PASSWORD, "101": "r3sident"}) as kamailio:
        toml.write_text(
            '[sip.account]\nuri = "sip:panel@127.0.0.1"\n'
            f'registrar = "{kamailio.registrar}"\nusername = "panel"\n'
            '[[apartments]]\nname = "101"\nbuttons = ["101"]\nresidents = ["sip:101@127.0.0.1"]\n'
            f'codes = ["{CODE}"]\n[[buttons]]\nname = "101"\npin = 17\n'
        )
        loaded, _ = load_config(toml, environ={"INTERCOM_SIP_PASSWORD": PASSWORD})
        assert loaded.sip.account.password == PASSWORD
        with Baresip(tmp_path, user="101") as phone, capture_logs() as logs:
            base = config_with(
                tmp_path, prompt_cache, [apartment("101", phone.uri, codes=(CODE,))], inbound_codes=("55501",)
            )
            config = replace(base, sip=replace(base.sip, account=loaded.sip.account))
            async with run_panel(config) as panel:
                await panel.until(lambda: panel.app.registered, 10, "registered")
                await panel.press()
                await phone.wait_event("CALL_ESTABLISHED", 10)
                await anyio.sleep(0.3)
                for digit in WRONG + CODE:
                    phone.command("sndcode", digit)
                    await anyio.sleep(0.3)
                await panel.until(lambda: panel.relay_energized, 5, "relay energized")
                await panel.visit_done()
                state = Path(config.paths.state_dir)
                (record,) = await panel.app.visit_history.recent(5)
            assert record.outcome == "door_opened"
    out, err = capfd.readouterr()
    places = {"python logs": logs.text, "stdout/stderr (pjsua's own log)": out + err}
    for path in sorted(os.listdir(state)):  # after the app stopped: nothing left to block
        if (state / path).is_file():
            places[path] = (state / path).read_bytes().decode("utf-8", "replace")
    assert "events.jsonl" in places and "history.sqlite3" in places
    for where, text in places.items():
        assert PASSWORD not in text, where
        for secret in (CODE, WRONG, "55501"):
            assert not re.search(rf"(?<!\d){secret}(?!\d)", text), (where, secret)
