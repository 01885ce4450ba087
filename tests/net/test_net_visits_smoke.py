"""benchmarks/net_visits.py end to end with one visit on a clean link, so it cannot rot unnoticed: the whole daemon
in the panel's namespace, a resident in the PBX's, the code typed as RFC 2833 opens the door (asserts no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.netlab import netlab_available

_why = netlab_available()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.peers]
ROOT = Path(__file__).resolve().parents[2]


def test_net_visits_prints_its_table(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.net_visits", "--visits", "1", "--level", "0 %", "--method", "rfc2833"]
    argv += ["--keep", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| loss each way | RFC 2833 (pjsua's default) |", rows
    assert rows[1].startswith("| 0 % | 1/1 opened (0 retyped); code-to-open median "), rows
