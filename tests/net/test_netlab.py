"""The test suite's own network: namespaces joined by a user-space link that loses, delays and reorders."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.netlab import PBX_IP, NetLab, netlab, netlab_available

_why = netlab_available()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")
PORT = 40999
PY = [sys.executable, "-m", "tests.support.udp_probe"]


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with netlab(seed=11) as made:
        server = made.popen(made.pbx, [*PY, "serve", str(PORT)], stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        yield made


def probe(lab: NetLab, count: int = 200, gap_ms: float = 5) -> dict[str, Any]:
    result = lab.run(lab.panel, [*PY, "probe", PBX_IP, str(PORT), str(count), str(gap_ms)])
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_clean_link_carries_everything_in_order(lab: NetLab) -> None:
    answer = probe(lab)
    assert answer["answered"] == 200
    assert answer["order"] == sorted(answer["order"])


def test_loss_is_what_was_asked_and_seeded(lab: NetLab) -> None:
    lab.impair(loss=0.2, seed=5)
    answer = probe(lab, count=400)
    # Both directions lose 20 %: 0.8 x 0.8 = 64 % of the round trips survive.
    assert 0.52 <= answer["answered"] / 400 <= 0.76, answer["answered"]
    out = lab.stats()["a>b"]  # panel -> PBX: every probe datagram was decided once
    assert out["passed"] + out["dropped"] == 400
    assert 0.14 <= out["dropped"] / 400 <= 0.26


def test_jitter_delays_and_reorders(lab: NetLab) -> None:
    lab.impair(jitter_ms=60, seed=3)
    answer = probe(lab, count=100, gap_ms=5)
    assert answer["answered"] == 100
    assert answer["order"] != sorted(answer["order"])  # frames overtook each other
    assert max(answer["rtt_ms"]) > 40


def test_outage_drops_everything_until_it_ends(lab: NetLab) -> None:
    lab.outage(True)
    assert probe(lab, count=20)["answered"] == 0
    lab.outage(False)
    assert probe(lab, count=20)["answered"] == 20


def test_panel_address_change(lab: NetLab) -> None:
    lab.set_panel_address("10.77.0.9")
    assert probe(lab, count=20)["answered"] == 20  # the new address works (ARP passes the bridge)
    result = lab.run(lab.panel, ["ip", "-4", "addr"])
    assert "10.77.0.9" in result.stdout and "10.77.0.2/" not in result.stdout
