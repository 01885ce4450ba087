"""benchmarks/net_recovery.py end to end with tiny waits, so it cannot rot unnoticed (asserts no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.netlab import netlab_available

_why = netlab_available()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.peers]
ROOT = Path(__file__).resolve().parents[2]


def test_net_recovery_prints_its_table() -> None:
    argv = [sys.executable, "-m", "benchmarks.net_recovery", "--cap", "3", "--outage", "1"]
    argv += ["--only", "address", "--only", "outage"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| scenario | ours | pjsua2 defaults")
    assert any("address changes" in r for r in rows) and any("outage ends" in r for r in rows)
