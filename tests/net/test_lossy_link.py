"""A visit's SIP over a lossy link: registration, a call answered, a DTMF digit typed by the resident, the
hang-up; at 5 % and 20 % loss each way (the netlab's impair bridge, seeded).

The far end is sipp in the PBX's namespace, sending its digit as SIP INFO (retransmitted by SIP itself, so a
lost datagram delays the digit but does not lose it).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netlab import PBX_IP, NetLab, netlab, netlab_available
from tests.support.netpeers import EngineProcess, NsKamailio, ns_sipp_argv
from tests.support.peers import Sipp

_why = netlab_available()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.peers]


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with netlab(seed=3) as made:
        yield made


def _of_call(kind: str, generation: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("event") == kind and m["handle"]["generation"] == generation


@pytest.mark.parametrize("loss", [0.05, 0.20])
def test_visit_over_a_lossy_link(tmp_path: Path, lab: NetLab, loss: float) -> None:
    lab.impair(loss=loss, jitter_ms=20, seed=int(loss * 100))
    with NsKamailio(tmp_path / "k", users={"panel": "s3cret"}, ns=lab.pbx) as kamailio:
        config = {
            "bind_address": "0.0.0.0",
            "port": 5060,
            "rtp_port": 20000,
            "account": {
                "uri": f"sip:panel@{PBX_IP}",
                "registrar": kamailio.registrar,
                "username": "panel",
                "password": "s3cret",
                "retry_seconds": 5,
                "retry_jitter_seconds": 1,
            },
        }
        engine = EngineProcess(tmp_path / "engine", lab, config).start()
        try:
            # A lost REGISTER or challenge is retransmitted by pjsip (500 ms, doubling): seconds, not minutes.
            engine.event("RegistrationChanged", 30, active=True)
            far = Sipp(tmp_path / "far", "uas_info_dtmf", digit="7")
            lab.popen(lab.pbx, ns_sipp_argv(far, lab.pbx, PBX_IP, ["-m", "1"])[4:], stdout=subprocess.DEVNULL)
            dialed = engine.send(cmd="dial", uri=f"sip:resident@{PBX_IP}:{far.port}", ring_timeout=30)
            generation = dialed["dialed"]
            engine.wait_for(_of_call("CallAnswered", generation), 30)
            digit = engine.wait_for(_of_call("DtmfReceived", generation), 30)
            assert (digit["digit"], digit["method"]) == ("7", "info")
            # (Not waiting for CallEnded: when the BYE's 200 is lost, sipp has already left and pjsip ends the
            # call only after its 32 s transaction timeout.)
            assert engine.send(cmd="hangup", generation=generation) == {"ok": True}
            dropped = lab.stats()["a>b"]["dropped"]
            assert dropped > 0  # the link did lose datagrams on the way
        finally:
            engine.stop()
