"""The SIP password and the door code never leave the daemon: not in its log, events, history or replies."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.app.conftest import DOOR_CODE, Daemon
from tests.support.peers import Baresip, Kamailio

pytestmark = pytest.mark.peers

PASSWORD = "Zq7-hunter2-Xk9p"  # distinctive, so any hit is a leak and not a coincidence


def test_password_and_code_appear_nowhere(make_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    # The resident is direct-IP: Baresip(registrar=...) can miss its own REGISTER_OK (registered before
    # its control connection is up), and what is under test is the panel's account, not the phone's.
    with Kamailio(tmp_path, {"panel": PASSWORD}) as kamailio, Baresip(tmp_path, user="101") as phone:
        daemon = make_daemon()
        daemon.write_config(
            [phone.uri], registrar=kamailio.registrar, account_uri="sip:panel@127.0.0.1", username="panel"
        )
        # The way systemd's EnvironmentFile=/LoadCredential= hands it over; debug logging, the chattiest.
        daemon.start(env={"INTERCOM_SIP_PASSWORD": PASSWORD, "INTERCOM_LOG_LEVEL": "DEBUG"})
        # Registered: kamailio challenged and accepted the digest, so the daemon did use the password.
        daemon.until(lambda: daemon.status()["registration"]["active"] is True, 10, "registration")
        assert daemon.status()["registration"]["registrar"] == kamailio.registrar  # status names the one in use
        daemon.ctl("press", "101")
        phone.wait_event_sync("CALL_ESTABLISHED", 10)
        time.sleep(0.3)
        phone.command("sndcode", DOOR_CODE)
        daemon.until(lambda: daemon.completed() >= 1, 15, "the visit to end")
        replies = "".join(
            daemon.ctl(*cmd, check=False).stdout
            for cmd in (("status", "--json"), ("history", "--json"), ("selftest", "--json"))
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(3) == 0
    (row,) = daemon.history_rows()
    assert row["outcome"] == "door_opened"  # the code did arrive and was accepted: it was there to leak
    outputs = {
        "stderr": daemon.log(),
        "events.jsonl": (daemon.state / "events.jsonl").read_text(),
        "control replies": replies,
    }
    for path in daemon.state.iterdir():  # the SQLite database and any -wal/-journal left beside it
        outputs[path.name] = path.read_bytes().decode("latin-1")
    assert "DTMF" in outputs["events.jsonl"]
    for name, text in outputs.items():
        assert PASSWORD not in text, f"the SIP password is in {name}"
        assert DOOR_CODE not in text, f"the door code is in {name}"
