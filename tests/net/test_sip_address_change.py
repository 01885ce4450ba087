"""The panel's own address changes (DHCP gave it another) or its link goes down and up: pjsua2 is told, its
transports are rebuilt, it registers again from the new address, and calls work both ways.

The engine runs in the netlab's panel namespace, kamailio and sipp in the PBX's (tests/support/netpeers.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netlab import PBX_IP, NetLab, netlab, netlab_available
from tests.support.netpeers import EngineProcess, NsKamailio, ns_sipp_argv
from tests.support.peers import Sipp

_why = netlab_available()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.peers]

NEW_ADDRESS = "10.77.0.9"


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with netlab(seed=7) as made:
        yield made


def _engine(tmp_path: Path, lab: NetLab, kamailio: NsKamailio) -> EngineProcess:
    config = {
        "bind_address": "0.0.0.0",  # a panel bound to one address could not follow it to the next
        "port": 5060,
        "rtp_port": 20000,
        "account": {
            "uri": f"sip:panel@{PBX_IP}",
            "registrar": kamailio.registrar,
            "username": "panel",
            "password": "s3cret",
            "register_expiry": 3600,  # no refresh during the test: what re-registers is the address change
        },
    }
    return EngineProcess(tmp_path / "engine", lab, config)


def _reached_through_the_registrar(tmp_path: Path, lab: NetLab, kamailio: NsKamailio, engine: EngineProcess) -> None:
    """A caller in the PBX's namespace calls the panel's AOR through kamailio: the binding kamailio holds
    must name the panel's current address for the INVITE to arrive (the engine refuses this stranger)."""
    caller = Sipp(tmp_path / f"caller{len(engine.seen)}", "uac_expect_refusal", status=603, caller="stranger")
    extra = [f"{PBX_IP}:{kamailio.port}", "-s", "panel", "-m", "1", "-timeout", "10s", "-timeout_error"]
    done = subprocess.run(ns_sipp_argv(caller, lab.pbx, PBX_IP, extra), capture_output=True, timeout=20, check=False)
    assert done.returncode == 0, caller.messages()[-3000:]
    engine.event("IncomingCall", 5, allowed=False)


def _dial_answered(tmp_path: Path, lab: NetLab, engine: EngineProcess) -> None:
    far = Sipp(tmp_path / f"far{len(engine.seen)}", "uas_answer_silent")
    lab.popen(lab.pbx, ns_sipp_argv(far, lab.pbx, PBX_IP, ["-m", "1"])[4:], stdout=subprocess.DEVNULL)
    dialed = engine.send(cmd="dial", uri=f"sip:far@{PBX_IP}:{far.port}")
    assert "dialed" in dialed, dialed
    engine.wait_for(lambda m: m.get("event") == "CallAnswered" and m["handle"]["generation"] == dialed["dialed"], 10)
    assert engine.send(cmd="hangup", generation=dialed["dialed"]) == {"ok": True}


def test_new_address_registers_again_and_calls_work(tmp_path: Path, lab: NetLab) -> None:
    with NsKamailio(tmp_path / "k", users={"panel": "s3cret"}, ns=lab.pbx) as kamailio:
        engine = _engine(tmp_path, lab, kamailio).start()
        try:
            engine.event("RegistrationChanged", 10, active=True)
            _reached_through_the_registrar(tmp_path, lab, kamailio, engine)

            lab.set_panel_address(NEW_ADDRESS)
            engine.event("RegistrationChanged", 10, active=True)  # registered again, from the new address
            assert engine.send(cmd="status")["address_changes"] >= 1
            _reached_through_the_registrar(tmp_path, lab, kamailio, engine)
            _dial_answered(tmp_path, lab, engine)
        finally:
            engine.stop()


def test_link_down_and_up_registers_again(tmp_path: Path, lab: NetLab) -> None:
    with NsKamailio(tmp_path / "k", users={"panel": "s3cret"}, ns=lab.pbx) as kamailio:
        engine = _engine(tmp_path, lab, kamailio).start()
        try:
            engine.event("RegistrationChanged", 10, active=True)
            lab.panel_link(False)
            lab.panel_link(True)
            engine.event("RegistrationChanged", 15, active=True)
            assert engine.send(cmd="status")["address_changes"] >= 1
            _reached_through_the_registrar(tmp_path, lab, kamailio, engine)
        finally:
            engine.stop()


def _ended(engine: EngineProcess, generation: int, timeout: float) -> dict[str, Any]:
    """The call's CallEnded event, seen already (passed over while waiting for a command's answer) or to come."""

    def match(m: dict[str, Any]) -> bool:
        return m.get("event") == "CallEnded" and m["handle"]["generation"] == generation

    return next((m for m in engine.seen if match(m)), None) or engine.wait_for(match, timeout)


def test_call_in_progress_follows_the_new_address(tmp_path: Path, lab: NetLab) -> None:
    """An answered call across the panel's address change: pjsua re-INVITEs it from the new address (its
    Contact and SDP), so it survives; the far end's next in-dialog request, sent to the new Contact, arrives."""
    with NsKamailio(tmp_path / "k", users={"panel": "s3cret"}, ns=lab.pbx) as kamailio:
        engine = _engine(tmp_path, lab, kamailio).start()
        try:
            engine.event("RegistrationChanged", 10, active=True)
            far = Sipp(tmp_path / "far", "uas_answer_reinvite", digit="5")
            lab.popen(lab.pbx, ns_sipp_argv(far, lab.pbx, PBX_IP, ["-m", "1"])[4:], stdout=subprocess.DEVNULL)
            generation = engine.send(cmd="dial", uri=f"sip:far@{PBX_IP}:{far.port}")["dialed"]
            engine.wait_for(lambda m: m.get("event") == "CallAnswered" and m["handle"]["generation"] == generation, 10)

            lab.set_panel_address(NEW_ADDRESS)
            after = engine.wait_for(
                lambda m: m.get("event") in ("DtmfReceived", "CallEnded") and m["handle"]["generation"] == generation,
                20,
            )
            assert after["event"] == "DtmfReceived", after  # the INFO to the re-INVITE's Contact arrived
            assert after["digit"] == "5"
            assert "re-INVITEing 1 call(s) in progress from the new address" in engine.log_text()
            reinvite = far.messages().split("INVITE sip:")[-1]  # the last INVITE sipp received: the re-INVITE
            assert f"@{NEW_ADDRESS}" in reinvite and f"IN IP4 {NEW_ADDRESS}" in reinvite, reinvite[:1500]
            assert engine.send(cmd="hangup", generation=generation) == {"ok": True}
            ended = _ended(engine, generation, 10)
            assert ended["by_us"], ended  # it lasted until the panel hung up
            # The next call works both ways.
            _reached_through_the_registrar(tmp_path, lab, kamailio, engine)
            _dial_answered(tmp_path, lab, engine)
        finally:
            engine.stop()
