"""The issue-18 benchmarks (memory breakdown, CPU quota) with tiny samples, so they cannot rot unnoticed.

Asserts that each runs, prints its table and, for the quota, leaves no cgroup behind; never a timing or a
size (a slow or busy machine must not fail here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cpu_quota import CpuQuota, quota_unavailable
from benchmarks.memory_breakdown import smaps_rollup, top_mappings
from tests.support.child_env import child_env

ROOT = Path(__file__).resolve().parents[2]
PEERS = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("baresip") is None,
    reason="needs kamailio and baresip (./dev.sh setup installs them)",
)
QUOTA = pytest.mark.skipif(quota_unavailable() is not None, reason=f"no CPU quota here: {quota_unavailable()}")


def _run(*args: str, timeout: float) -> str:
    # child_env: the pjsua2 source build on PYTHONPATH stays there (with the repo alone, the daemon the benchmark
    # starts found no pjsua2 where the venv has no wheel, and never registered).
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    return proc.stdout


def test_memory_of_this_process_is_read_from_proc() -> None:
    mem = smaps_rollup(os.getpid())
    assert 0 < mem["uss_kb"] <= mem["pss_kb"] <= mem["rss_kb"]
    mappings = top_mappings(os.getpid(), top=5)
    assert len(mappings) == 5
    assert all(kb > 0 for _name, kb in mappings)


@QUOTA
def test_a_quota_cgroup_holds_its_child_and_is_removed_on_exit() -> None:
    with CpuQuota(50_000, 100_000) as quota:
        name = quota.path.name
        out = subprocess.run(
            [sys.executable, "-c", "print(open('/proc/self/cgroup').read())"],
            preexec_fn=quota.join,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    assert name in out
    assert not quota.path.exists()


@PEERS
@pytest.mark.peers
@pytest.mark.timeout(240)
def test_memory_breakdown_prints_its_table() -> None:
    out = _run("benchmarks.memory_breakdown", "--no-traced", "--visits", "2", timeout=220)
    assert "9a. Memory after start and after the visits, beside baresip" in out
    for row in (
        "intercomd |",
        "baresip |",
        "bare interpreter |",
        "libStart",
        "app, after 2 visits (2 opened the door) |",
        "baresip, idle, after the visits |",
        "PortAudio initialized |",
    ):
        assert row in out, row


@QUOTA
@PEERS
@pytest.mark.peers
@pytest.mark.timeout(240)
def test_cpu_quota_prints_its_table_and_removes_its_cgroup() -> None:
    out = _run("benchmarks.cpu_quota", "--starts", "1", "--presses", "2", timeout=220)
    assert "9b. Under a Pi-sized CPU quota" in out
    for row in ("start -> READY, warm cache, 25 % of one core", "ours: press qualified -> INVITE, 25 %"):
        assert row in out, row
    # This run's cgroup only: a concurrent run's may exist meanwhile.
    removed = [line for line in out.splitlines() if line.startswith("cgroup /sys/fs/cgroup/")]
    assert removed and removed[-1].endswith(" removed"), out[-2000:]
