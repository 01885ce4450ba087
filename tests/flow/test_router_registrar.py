"""The router's registration lines name the registrar in use (failover between several registrars)."""

from __future__ import annotations

import logging

import anyio
import pytest

from daemon.sip.types import RegistrationChanged
from tests.flow.test_router import Harness


async def test_registration_lines_name_the_registrar(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.router.run)
        with caplog.at_level(logging.INFO, logger="daemon.flow.router"):
            h.router.sip_event(RegistrationChanged(True, 200, "OK", 300, "sip:10.0.0.3"))
            h.router.sip_event(RegistrationChanged(False, 408, "no answer for 10 s", 0, "sip:10.0.0.3"))
        tg.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records]
    assert "registration up (sip:10.0.0.3): 200 OK" in lines
    assert "registration down (sip:10.0.0.3): 408 no answer for 10 s" in lines
    assert h.rec.events[-2:] == [("REGISTRATION_UP", "200 OK"), ("REGISTRATION_DOWN", "408 no answer for 10 s")]
