"""Registration against a real kamailio: digest auth over UDP and TCP, bad credentials, registrar restart."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.sip import IncomingCall, RegistrationChanged, RegistrationFailure, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import KAMAILIO_MODULES, Kamailio, Sipp, free_port

pytestmark = pytest.mark.peers


def _account(k: Kamailio, password: str = "s3cret") -> dict[str, str]:
    return {"uri": k.uri("panel"), "registrar": k.registrar, "username": "panel", "password": password}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_good_credentials(tmp_path: Path, bridge: LoopBridge, transport: str) -> None:
    with Kamailio(tmp_path, users={"panel": "s3cret"}) as k:
        async with SipEngine(make_config(transport=transport, account=_account(k)), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged)
            assert (event.active, event.code) == (True, 200)
            assert engine.registration.active and engine.registration.configured
            assert await engine.options_ping(k.registrar) == 200


async def test_register_bad_credentials(tmp_path: Path, bridge: LoopBridge) -> None:
    with Kamailio(tmp_path, users={"panel": "s3cret"}) as k:
        async with SipEngine(make_config(account=_account(k, password="wrong")), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged)
            assert not event.active and event.code in (401, 403)
            assert not engine.registration.active


async def test_reregisters_after_registrar_restart(tmp_path: Path, bridge: LoopBridge) -> None:
    # max_expires=8: kamailio grants 8 s, pjsua refreshes 5 s before expiry, so every ~3 s.
    with Kamailio(tmp_path, users={"panel": "s3cret"}, max_expires=8) as k:
        async with SipEngine(make_config(account=_account(k)), bridge) as engine:
            log = EventLog(engine)
            assert (await log.wait(RegistrationChanged)).active
            k.restart()  # a database-less registrar forgets every binding
            restarted = anyio.current_time()
            while True:
                event = await log.wait(RegistrationChanged, timeout=15)
                if event.active and anyio.current_time() > restarted:
                    break
            # The binding is really back: a call to the panel's AOR through kamailio reaches the engine.
            caller = Sipp(tmp_path, "uac_expect_refusal", status=603, caller="stranger")
            assert await caller.run_uac(k.port, user="panel") == 0
            incoming = await log.wait(IncomingCall)
            assert not incoming.allowed


async def test_retry_interval_after_a_failure_is_the_configured_one(tmp_path: Path, bridge: LoopBridge) -> None:
    # Over TCP a registrar that is not there fails the REGISTER at once (connection refused), so the clock
    # starts at a known failure. pjsua's own default would retry after 300 s; this config says 10 +- 2.
    retry, jitter = 10, 2
    k = Kamailio(tmp_path, users={"panel": "s3cret"})  # its port is chosen, nothing listens yet
    # failover_seconds at its most (probes 100 s apart): a probe answered would register at once (the next
    # test), and here pjsua's retry alone is measured.
    account = {**_account(k), "retry_seconds": retry, "retry_jitter_seconds": jitter, "failover_seconds": 300}
    try:
        async with SipEngine(make_config(transport="tcp", account=account), bridge) as engine:
            log = EventLog(engine)
            failed = await log.wait(RegistrationChanged)
            assert not failed.active
            k.start()
            back = await log.wait(RegistrationChanged, timeout=retry + jitter + 5)
            waited = back.at - failed.at
            assert back.active, back
            assert retry - jitter - 0.5 <= waited <= retry + jitter + 1.5, waited
    finally:
        k.stop()


async def test_registrar_back_after_an_outage_is_registered_with_at_once(tmp_path: Path, bridge: LoopBridge) -> None:
    # A long retry interval (60 s): what brings the registration back within seconds is the probe seeing the
    # registrar answer again, not pjsua's retry. Over TCP the failure is immediate (connection refused).
    with Kamailio(tmp_path, users={"panel": "s3cret"}, max_expires=8) as k:
        account = {**_account(k), "retry_seconds": 60, "retry_jitter_seconds": 1, "failover_seconds": 2}
        async with SipEngine(make_config(transport="tcp", account=account), bridge) as engine:
            log = EventLog(engine)
            assert (await log.wait(RegistrationChanged)).active
            k.stop()
            while (await log.wait(RegistrationChanged, timeout=15)).active:
                pass
            k.start()
            back_from = anyio.current_time()
            while not (await log.wait(RegistrationChanged, timeout=10)).active:
                pass
            assert anyio.current_time() - back_from < 5


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_an_unreachable_registrar_is_a_transport_failure_not_a_sip_status(
    bridge: LoopBridge, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The registrar cannot be reached from here: over UDP a socket bound to 127.0.0.1 cannot send to another
    host's address (the kernel says EINVAL, what a panel showed as "503 Invalid argument"); over TCP nobody
    listens. pjsip reports these as a made-up "503 <local error>"; the engine says what they are: a transport
    failure, with no SIP status, in its event, its snapshot and its log."""
    host = "192.0.2.1" if transport == "udp" else "127.0.0.1"  # TEST-NET-1: never answers
    registrar = f"sip:{host}:{free_port()}"
    account = {"registrar": registrar, "username": "panel", "password": "s3cret"}
    with caplog.at_level(logging.INFO, logger="daemon.sip._pj_owner"):
        async with SipEngine(make_config(transport=transport, account=account), bridge) as engine:
            event = await EventLog(engine).wait(RegistrationChanged, timeout=10)
            snapshot = engine.registration
    assert not event.active, event
    assert event.failure is RegistrationFailure.TRANSPORT, event
    assert event.code == 0, event  # no SIP status: nothing answered
    assert event.reason.startswith("transport error: "), event
    assert (snapshot.failure, snapshot.code, snapshot.registrar) == (RegistrationFailure.TRANSPORT, 0, registrar)
    lines = [r.getMessage() for r in caplog.records if "registration with" in r.getMessage()]
    assert lines and all(" 503 " not in line for line in lines), lines
    assert "transport error" in lines[0], lines


def test_kamailio_modules_are_found_for_this_architecture() -> None:
    """The registrar's modules live under the machine's multiarch directory: the arm64 run (a Pi's architecture)
    failed every kamailio test while the path named x86_64-linux-gnu."""
    assert (Path(KAMAILIO_MODULES) / "registrar.so").is_file(), KAMAILIO_MODULES
