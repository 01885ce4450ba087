"""The benchmark harness end to end with tiny counts (``--quick``), so it cannot rot unnoticed.

Asserts only that every figure was produced and written; never on a timing number (a slow CI machine
must not fail here). Needs the real peers: pjsua2 (three processes), espeak-ng, sipp.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.peers,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
        reason="needs sipp and espeak-ng (./dev.sh setup installs them)",
    ),
]


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    # A subprocess: the harness starts pjsua2 Endpoints in children, and the test process stays clean.
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text(encoding="utf-8")
    for title in (
        "1. Button edge",
        "2. Button edge",
        "3a.",
        "3b.",
        "4. Resident",
        "5.",
        "5a.",
        "5b.",
        "6. Idle CPU",
        "6b. Idle wake-ups",
        "7. Loop scheduling lag",
        "8. Prompt synthesis",
        "## Machine",
    ):
        assert f"## {title}" in report or title in report, title
    assert "Not measured" not in report
    assert "after warm-up (MB)" in report and "0 calls" in report  # figure 5's RSS series of both designs
    idle = report[report.index("registered (kamailio) before and after") :]
    assert idle.splitlines()[2].endswith("| yes |"), idle[:400]  # figure 6 idles with a registration up
    assert "ring group (parallel legs)" in report  # figure 7 says which group each press rang
    assert "## Errors during the run" not in report
    images = sorted(p.name for p in (tmp_path / "img").glob("*.png"))
    assert {"fig1_invite.png", "fig3_pjsua2.png", "fig8_prompts.png"} <= set(images)
