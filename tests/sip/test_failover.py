"""Two registrars (two kamailio on 127.0.0.1): the first is used, the second takes over when the first stops
answering, the first is used again once it is back; direct-IP residents are called with every registrar down."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from daemon.bridge import LoopBridge
from daemon.config import SipConfig
from daemon.simulation.phone import Baresip
from daemon.sip import CallAnswered, RegistrationChanged, SipEngine
from tests.sip.conftest import EventLog, make_config
from tests.support.peers import Kamailio, free_port

pytestmark = pytest.mark.peers

USERS = {"panel": "s3cret", "101": "r3sident"}
FAILOVER_SECONDS = 2.0
RETRY_SECONDS = 5


def _config(*registrars: Kamailio, **account: Any) -> SipConfig:
    return make_config(
        account={
            "registrars": tuple(k.registrar for k in registrars),
            "username": "panel",
            "password": "s3cret",
            "failover_seconds": FAILOVER_SECONDS,
            "retry_seconds": RETRY_SECONDS,
            "retry_jitter_seconds": 1,
            **account,
        }
    )


async def _wait_in_use(log: EventLog, registrar: str, timeout: float) -> RegistrationChanged:
    """The next RegistrationChanged saying ``registrar`` is in use (earlier ones skipped)."""
    with anyio.fail_after(timeout):
        while True:
            event = await log.wait(RegistrationChanged, timeout=timeout)
            if event.active and event.registrar == registrar:
                return event


async def _call_answered(engine: SipEngine, log: EventLog, uri: str) -> str:
    """Dial ``uri``; return the URI pjsua dialled once the resident answered, then hang up."""
    handle = await engine.dial(uri, ring_timeout=10)
    await log.wait(CallAnswered, handle, timeout=10)
    await engine.hangup(handle)
    return handle.remote_uri


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_fails_over_to_the_second_and_returns_to_the_first(
    tmp_path: Path, bridge: LoopBridge, transport: Literal["udp", "tcp"]
) -> None:
    with (
        Kamailio(tmp_path / "k1", users=USERS) as first,
        Kamailio(tmp_path / "k2", users=USERS) as second,
        # The resident's phone is registered with both PBXs, as a PBX pair shares its users.
        Baresip(tmp_path / "a", user="101", registrar=first) as phone_at_first,
        Baresip(tmp_path / "b", user="101", registrar=second),
    ):
        # Over UDP the OPTIONS probes notice the silence; over TCP the REGISTER fails with the connection.
        async with SipEngine(replace(_config(first, second), transport=transport), bridge) as engine:
            log = EventLog(engine)
            await _wait_in_use(log, first.registrar, timeout=10)
            assert engine.registration.registrar == first.registrar
            resident = first.uri("101")  # residents are configured at the first PBX's address
            assert await _call_answered(engine, log, resident) == resident

            first.stop()
            stopped = anyio.current_time()
            await _wait_in_use(log, second.registrar, timeout=RETRY_SECONDS + 5)
            failover = anyio.current_time() - stopped
            # Probes decide: OPTIONS over UDP, a TCP connect over TCP (pjsua alone would only notice at its next
            # REGISTER, RETRY_SECONDS after the connection dropped).
            assert failover <= FAILOVER_SECONDS + 1.5, failover
            assert engine.registration.active and engine.registration.registrar == second.registrar
            # The visit rings through the second: the same resident, at the second PBX's address.
            assert await _call_answered(engine, log, resident) == second.uri("101")

            first.start()
            await _wait_in_use(log, first.registrar, timeout=FAILOVER_SECONDS + 5)
            phone_at_first.stop()  # the restarted PBX forgot the phone too: it registers again
            phone_at_first.start()
            assert await _call_answered(engine, log, resident) == resident
            assert engine.fault_counters == (0, 0)


async def test_direct_ip_resident_is_called_with_every_registrar_down(tmp_path: Path, bridge: LoopBridge) -> None:
    with (
        Kamailio(tmp_path / "k1", users=USERS) as first,
        Kamailio(tmp_path / "k2", users=USERS) as second,
        Baresip(tmp_path / "direct", user="101") as phone,
    ):
        async with SipEngine(_config(first, second), bridge) as engine:
            log = EventLog(engine)
            await _wait_in_use(log, first.registrar, timeout=10)
            first.stop()
            second.stop()
            with anyio.fail_after(FAILOVER_SECONDS + 5):
                while (event := await log.wait(RegistrationChanged)).active:
                    pass
            assert event.registrar in (first.registrar, second.registrar)
            assert not engine.registration.active
            assert await _call_answered(engine, log, phone.uri) == phone.uri


async def test_an_unreachable_first_registrar_fails_over_on_its_transport_error(
    tmp_path: Path, bridge: LoopBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listens at the first registrar's TCP port: its REGISTER fails with a local transport error (logged
    as one, with no SIP status), and calls go through the second."""
    unreachable = f"sip:127.0.0.1:{free_port()}"
    with Kamailio(tmp_path / "k2", users=USERS) as second, caplog.at_level(logging.INFO, "daemon.sip._pj_owner"):
        config = replace(_config(second), transport="tcp")
        config = replace(config, account=replace(config.account, registrars=(unreachable, second.registrar)))
        async with SipEngine(config, bridge) as engine:
            await _wait_in_use(EventLog(engine), second.registrar, timeout=10)
    failed = [r.getMessage() for r in caplog.records if f"registration with {unreachable} inactive" in r.getMessage()]
    assert failed and failed[0].endswith("transport error: Connection refused (expires 0 s)"), failed
