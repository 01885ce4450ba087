"""What starting the daemon imports: packages only one optional feature needs stay off the start path.

Each is resident memory a panel keeps for its whole life (issue 18, docs/benchmarks.md "Memory breakdown"):
aiomqtt with paho and ssl ~14 MB over a bare interpreter (only with ``[mqtt]`` configured, imported by
``IntercomApp`` when it starts the link), ssl alone ~5 MB (only a SIP TLS config is checked with it), numpy
~20 MB (no daemon code uses it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFF_THE_START_PATH = ("aiomqtt", "paho", "ssl", "numpy", "pjsua2")


@pytest.mark.parametrize("module", ["daemon.app", "daemon.cli"])
def test_importing_the_daemon_leaves_optional_packages_unloaded(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(set(sys.modules) & set({OFF_THE_START_PATH!r}))))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == [], done.stderr
