"""The press's path to its INVITE carries nothing that can wait (issue 18): through the real stack, real pjsua2."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from daemon.config import Apartment
from tests.scenario.conftest import run_panel, scenario_config
from tests.support.alsa import AlsaCapture

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


@contextmanager
def resident_socket() -> Iterator[socket.socket]:
    """A resident that never answers: a UDP socket whose datagrams carry the moment the kernel queued them
    (CLOCK_REALTIME), that is the moment the panel's sendto() put the INVITE on the loopback wire."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def first_invite_at(sock: socket.socket) -> float:
    """Wall time (kernel stamp) the first INVITE arrived at ``sock``."""
    while True:
        data, ancdata, _flags, _src = sock.recvmsg(65536, 64)
        if data.startswith(b"INVITE "):
            for level, kind, stamp in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack_from("@qq", stamp)
                    return float(sec + nsec / 1e9)
            raise AssertionError("the INVITE came without its kernel timestamp")


class HandOvers(logging.Handler):
    """When each visit event was handed over to the visit log (its log record is made in the hand-over)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "visit_event", None)
        if name is not None:
            self.at.setdefault(str(name), record.created)


async def test_the_invite_leaves_before_the_press_and_its_call_start_are_logged(
    tmp_path: Path, prompt_cache: Path, speaker: AlsaCapture
) -> None:
    """BUTTON_PRESSED and CALL_START are handed over to the visit log (a log record, the events.jsonl writer woken,
    subscribers) once the INVITE has left: on a Pi-sized CPU that hand-over took CPU, and woke threads, that the
    INVITE needed. They are still logged, in order, before anything the call does."""
    handovers = HandOvers()
    logger = logging.getLogger("daemon.visitlog")
    level = logger.level
    logger.addHandler(handovers)
    logger.setLevel(logging.INFO)
    try:
        with resident_socket() as resident:
            port = resident.getsockname()[1]
            apartment = Apartment(name="101", buttons=("101",), residents=(f"sip:101@127.0.0.1:{port}",))
            config = scenario_config(tmp_path, prompt_cache, [apartment])
            async with run_panel(config) as panel:
                await panel.press()
                invite_at = await anyio.to_thread.run_sync(first_invite_at, resident)
                await panel.until(lambda: "CALL_START" in handovers.at, 5, "CALL_START logged")
                panel.app.visits.cancel_current()
                await panel.visit_done()
                names = panel.names()
    finally:
        logger.removeHandler(handovers)
        logger.setLevel(level)
    assert invite_at < handovers.at["BUTTON_PRESSED"] <= handovers.at["CALL_START"]
    assert names[:2] == ["BUTTON_PRESSED", "CALL_START"], names
